"""ModelDeployment reconciler: serve the stable version, roll out the wanted one.

One call, in order:

1. manual actions from annotations (`pilotage.dev/retry`, `abort`, `promote`), each
   acted on once per distinct value (`status.handledActions`);
2. the wanted version from `spec.model` (ref, uri, or newest deployable match);
3. the first version goes straight to stable; a different wanted version becomes the
   candidate and its rollout starts (a rejected version waits for retry or a new one);
4. a DriftMonitor's rollback signal, then the analysis of the interval that ended,
   may roll the candidate back in this same call (traffic 0, `Degraded`, `RolledBack`)
   (`pilotage.control.candidate`);
5. the strategy advances (`pilotage.control.strategies`: canary steps and pauses,
   blue-green preview then switch, shadow comparison then promote or hold);
6. actions: the router, one server per (deployment, version) wanted, the routing
   table, then the removal of servers nothing refers to any more
   (`pilotage.control.serving`); then the phase and conditions
   (`pilotage.control.rollout_phase`).

The working state and the transitions every strategy shares are in
`pilotage.control.rollout`.
"""

from __future__ import annotations

from datetime import datetime

from pilotage.api.common import parse_duration
from pilotage.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from pilotage.control.candidate import analyse, drift_rollback
from pilotage.control.common import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    FULL_PROMOTION,
    RUN_POLL_SECONDS,
    STEADY_POLL_SECONDS,
    is_full_promotion,
    pending_action,
)
from pilotage.control.resolve import Unresolved, resolve, version_from_uri
from pilotage.control.rollout import Rollout
from pilotage.control.rollout_phase import SERVER_FAILING, TABLE_REJECTED, conclude
from pilotage.control.routes import logging_status
from pilotage.control.serving import router_rejection, routing_table, serving_actions
from pilotage.control.strategies import strategy_for
from pilotage.control.types import ModelDeploymentObservation, Result

__all__ = [
    "FULL_PROMOTION",
    "SERVER_FAILING",
    "TABLE_REJECTED",
    "is_full_promotion",
    "reconcile_modeldeployment",
    "spec_problem",
]


def spec_problem(spec: ModelDeploymentSpec) -> str | None:
    """What makes the spec unusable, naming the field; None when it is usable."""
    if spec.model.uri is not None and not version_from_uri(spec.model.uri):
        return "spec.model.uri: no path segment to take the model version from"
    if parse_duration(spec.analysis.interval) <= 0:
        return "spec.analysis.interval: must be longer than 0s"
    return strategy_for(spec).problem(spec)


def manual_actions(r: Rollout) -> str | None:
    """Retry and abort act now; a promote request is returned for the strategy step."""
    st, md = r.st, r.md
    retry = pending_action(md, ANNOTATION_RETRY, st.handled_actions)
    if retry is not None:
        st.handled_actions[ANNOTATION_RETRY] = retry
        if st.rejected_version is not None:
            r.event("Normal", "Retried", f"version {st.rejected_version} will be rolled out again")
            st.rejected_version = None
    abort = pending_action(md, ANNOTATION_ABORT, st.handled_actions)
    if abort is not None:
        st.handled_actions[ANNOTATION_ABORT] = abort
        if st.candidate is not None:
            r.reject("Aborted", "Aborted", "manual abort; traffic back to stable")
        elif st.previous is not None:
            r.switch_back()
    promote = pending_action(md, ANNOTATION_PROMOTE, st.handled_actions)
    if promote is not None and st.candidate is None:
        st.handled_actions[ANNOTATION_PROMOTE] = promote  # nothing to promote: consume it
        return None
    return promote


def follow_wanted(r: Rollout) -> None:
    """Make the wanted version stable (the first one) or the candidate of a rollout."""
    st = r.st
    wanted = resolve(r.spec.model, r.obs)
    if isinstance(wanted, Unresolved):
        r.unresolved = wanted
        return
    model = wanted.model
    if r.spec.model.uri is not None:
        # A URI already served keeps the version it got: the card that names it may be
        # readable on one call and not on the next.
        model = next(
            (m for m in (st.candidate, st.stable) if m is not None and m.uri == model.uri),
            model,
        )
    if st.stable is None:
        st.stable = model
        message = f"version {model.version} deployed as stable from {model.uri}"
        r.record(model.version, "Deployed", "Initial", message)
        r.event("Normal", "Deployed", message)
        return
    if st.candidate is not None and model.version != st.candidate.version:
        why = "SpecReverted" if model.version == st.stable.version else "Superseded"
        message = f"rollout of {st.candidate.version} stopped: spec now wants {model.version}"
        r.record(st.candidate.version, "Aborted", why, message)
        r.event("Normal", why, message)
        r.end_rollout()
    if model.version == st.stable.version:
        st.rejected_version = None
        return
    if st.candidate is None and model.version != st.rejected_version:
        r.start_rollout(model)


def advance(r: Rollout, promote: str | None) -> None:
    """Move the rollout on as far as the strategy allows right now, once the candidate's
    server is ready and the analysis allows it."""
    st = r.st
    cand = st.candidate
    assert cand is not None
    last = st.last_analysis
    failure = r.server_failure(cand.version)
    if failure and last is not None and last.failures > r.spec.analysis.failure_limit:
        r.halted = True  # autoRollback is off: wait for a person
        return
    if not r.server_ready(cand.version):
        # The step's clock keeps running (a restart of `pilotage up` stops and starts
        # the servers): it was only ever started once the candidate was ready.
        r.failing = failure or ""
        r.waiting = failure or f"waiting for the server of candidate {cand.version} to be ready"
        r.wait(RUN_POLL_SECONDS)
        return
    if st.step_started is None:
        st.step_started = r.stamp
    if promote is not None:
        st.handled_actions[ANNOTATION_PROMOTE] = promote
        if r.strategy.promotes_at_once(promote):
            r.promote("manual")
            return
    if last is not None and last.failures > r.spec.analysis.failure_limit:
        r.halted = True  # autoRollback is off: wait for a person
        return
    r.strategy.advance(r, promote_requested=promote is not None)


def _note_endpoint(r: Rollout) -> None:
    """`status.endpoint` follows the router; a move is noted (`endpointNote`, an event)."""
    st, router = r.st, r.obs.router
    if router is None or not router.endpoint:
        return
    if st.endpoint and st.endpoint != router.endpoint:
        why = router.endpoint_problem or "the router was restarted on another port"
        st.endpoint_note = (
            f"endpoint moved from {st.endpoint} to {router.endpoint} at {r.stamp}: {why}"
        )[:1024]
        r.event("Warning", "EndpointChanged", st.endpoint_note)
    st.endpoint = router.endpoint


def _roll_out(r: Rollout) -> None:
    """Steps 1 to 5 of the call (a usable spec only)."""
    st = r.st
    promote = manual_actions(r)
    follow_wanted(r)
    drift_rollback(r)
    if st.candidate is not None:
        current = routing_table(r)
        cand = st.candidate.version
        if current is not None and (r.server_ready(cand) or r.server_failure(cand)):
            analyse(r, current)
        if st.candidate is not None:
            advance(r, promote)
    r.scale_down()


def reconcile_modeldeployment(
    md: ModelDeployment, obs: ModelDeploymentObservation, now: datetime
) -> Result[ModelDeploymentStatus]:
    r = Rollout(md, obs, now)
    st, old = r.st, r.old
    _note_endpoint(r)
    router = obs.router if obs.router is not None and obs.router.ready else None
    st.logging = logging_status(md.spec, router.stats if router else None, st.logging)
    problem = spec_problem(md.spec)
    if not problem:
        _roll_out(r)
    table = routing_table(r)
    actions = serving_actions(r, table)
    rejection = None if problem else router_rejection(r, table)
    phase, readiness = conclude(r, problem, rejection)
    st.phase = phase
    st.message = readiness.message[:1024]
    st.conditions = readiness.conditions(st.conditions, md.generation, r.stamp)
    changed = st.message != old.message[:1024]
    if problem and (old.phase != phase or changed):
        r.event("Warning", "InvalidSpec", problem)
    if readiness.reason in (TABLE_REJECTED, SERVER_FAILING) and changed:
        r.event("Warning", readiness.reason, readiness.message)
    if phase == "Healthy" and old.phase != "Healthy":
        r.event("Normal", "Healthy", readiness.message)
    r.wait(STEADY_POLL_SECONDS)
    if readiness.ready is not True and not readiness.stalled:
        r.wait(RUN_POLL_SECONDS)
    return Result(st, actions, r.events, min(r.timers))
