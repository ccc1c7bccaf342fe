"""ModelDeployment reconciler: serve the stable version, roll out the wanted one.

One call, in order:

1. manual actions from annotations (`pilotage.dev/retry`, `abort`, `promote`), each
   acted on once per distinct value (`status.handledActions`);
2. the wanted version from `spec.model` (ref, uri, or newest deployable match);
3. the first version goes straight to stable; a different wanted version becomes the
   candidate and its rollout starts (a rejected version waits for retry or a new one);
4. a DriftMonitor's rollback signal, then the analysis of the interval that ended,
   may roll the candidate back in this same call (traffic 0, `Degraded`, `RolledBack`);
5. the strategy advances: canary steps and pauses, blue-green preview then switch,
   shadow comparison then promote or hold;
6. actions: the router, one server per (deployment, version) wanted, the routing
   table, then the removal of servers nothing refers to any more (in that order).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pilotage.api.common import parse_duration
from pilotage.api.modeldeployment import (
    AnalysisResult,
    HistoryEntry,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelRef,
)
from pilotage.control.analysis import has_slos, judge, measure, snapshot
from pilotage.control.common import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    RUN_POLL_SECONDS,
    STEADY_POLL_SECONDS,
    format_time,
    parse_time,
    pending_action,
    reconciled_conditions,
    seconds_between,
)
from pilotage.control.resolve import Unresolved, resolve, version_from_uri
from pilotage.control.routes import CANDIDATE_ROLE, build_table, traffic, traffic_summary
from pilotage.control.types import (
    Action,
    DriftSignal,
    EnsureRouter,
    EnsureServer,
    Event,
    ModelDeploymentObservation,
    RemoveServer,
    Result,
    RouteTable,
    ServerSettings,
    SetRoutes,
)

HISTORY_LIMIT = 20
TABLE_REJECTED = "RoutingTableRejected"
SERVER_FAILING = "ServerFailing"
"""A variant's server exits each time it is started (reason of Ready=False)."""
FULL_PROMOTION = "full"


def is_full_promotion(value: str) -> bool:
    """`pilotage.dev/promote: full` or `full:<token>` promotes to 100 % at once; the token
    makes each request a new value, so two full promotions in a row are two requests.
    Any other value (`step`, `step:<token>`, a timestamp) is one step."""
    return value == FULL_PROMOTION or value.startswith(FULL_PROMOTION + ":")


Phase = Literal["Pending", "Progressing", "Paused", "Healthy", "Degraded"]


def spec_problem(spec: ModelDeploymentSpec) -> str | None:
    """What makes the spec unusable, naming the field; None when it is usable."""
    if spec.model.uri is not None and not version_from_uri(spec.model.uri):
        return "spec.model.uri: no path segment to take the model version from"
    if parse_duration(spec.analysis.interval) <= 0:
        return "spec.analysis.interval: must be longer than 0s"
    if (
        spec.strategy.type == "Shadow"
        and parse_duration(spec.strategy.shadow_or_default().duration) <= 0
    ):
        return "spec.strategy.shadow.duration: must be longer than 0s"
    return None


def _failed_analyses(count: int) -> str:
    return f"{count} failed analysis" if count == 1 else f"{count} failed analyses"


def analysis_text(result: AnalysisResult) -> str:
    """`Pass (n=120, p99 3.2ms, error rate 0.000, agreement 1.000)`: what was measured."""
    figures = [f"n={result.requests}"]
    if result.p99_ms is not None:
        figures.append(f"p99 {result.p99_ms:.1f}ms")
    if result.error_rate is not None:
        figures.append(f"error rate {result.error_rate:.3f}")
    if result.agreement is not None:
        figures.append(f"agreement {result.agreement:.3f}")
    if result.drift_score is not None:
        figures.append(f"drift score {result.drift_score:.3f}")
    return f"{result.verdict} ({', '.join(figures)})"


class _Reconcile:
    """The working state of one call; nothing outlives it."""

    def __init__(self, md: ModelDeployment, obs: ModelDeploymentObservation, now: datetime):
        self.md = md
        self.spec = md.spec
        self.obs = obs
        self.now = now
        self.stamp = format_time(now)
        self.old = md.status or ModelDeploymentStatus()
        self.st = self.old.model_copy(deep=True)
        self.st.observed_generation = md.generation
        self.events: list[Event] = []
        self.timers: list[float] = []
        self.paused = False
        self.halted = False
        self.waiting = ""
        self.failing = ""
        """Why the candidate's server cannot start, when it cannot."""
        self.unresolved: Unresolved | None = None

    # -- observations ------------------------------------------------------------

    def server_ready(self, version: str) -> bool:
        return any(s.version == version and s.ready for s in self.obs.servers)

    def server_failure(self, version: str) -> str | None:
        """Why the version's server cannot start (crash loop), or None."""
        for s in self.obs.servers:
            if s.version == version and s.failing and not s.ready:
                restarts = f" (restarted {s.restarts} times)" if s.restarts else ""
                return f"server of version {version} cannot start: {s.message}{restarts}"
        return None

    def router_ready(self) -> bool:
        return self.obs.router is not None and self.obs.router.ready

    def router_rejection(self, table: RouteTable | None) -> str | None:
        """Why the router refused the table this call asks for; None when it did not, or
        when the refusal the shell saw was about another table."""
        router = self.obs.router
        if router is None or router.rejection is None or table is None:
            return None
        rejection = router.rejection
        if rejection.revision is not None and rejection.revision != table.revision:
            return None
        if router.stats is not None and router.stats.revision == table.revision:
            return None  # in use after all (a later push, another router pod)
        return rejection.reason

    def candidate_role(self) -> str:
        return CANDIDATE_ROLE[self.spec.strategy.type]

    # -- bookkeeping -------------------------------------------------------------

    def event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def record(self, version: str, action: str, reason: str, message: str) -> None:
        entry = HistoryEntry.model_validate(
            {
                "time": self.stamp,
                "version": version,
                "action": action,
                "reason": reason,
                "message": message[:1024],
            }
        )
        self.st.history = [*self.st.history, entry][-HISTORY_LIMIT:]

    def rollout_started(self) -> datetime | None:
        cand = self.st.candidate
        if cand is None:
            return None
        for entry in reversed(self.st.history):
            if entry.version == cand.version and entry.action == "RolloutStarted":
                return parse_time(entry.time)
        return None

    def drift_predates_rollout(self, drift: DriftSignal) -> bool:
        """Drift that began before this rollout did is not the candidate's doing."""
        started = self.rollout_started()
        return drift.since is not None and started is not None and drift.since <= started

    def candidate_drift(self) -> DriftSignal | None:
        """The drift signal that may count against the candidate: one about the stable
        version (a monitor not yet past a promotion still speaks of an earlier one) whose
        drift did not begin before this rollout."""
        drift, stable = self.obs.drift, self.st.stable
        if drift is None or stable is None or drift.version != stable.version:
            return None
        return None if self.drift_predates_rollout(drift) else drift

    def wait(self, seconds: float) -> None:
        self.timers.append(max(0.05, seconds))

    # -- transitions -------------------------------------------------------------

    def start_rollout(self, model: ModelRef) -> None:
        st = self.st
        st.candidate = model
        st.current_step = 0 if self.spec.strategy.type == "Canary" else None
        st.step_started = None
        st.passing_since = None
        st.analysis_checkpoint = None
        st.last_analysis = None
        st.rejected_version = None
        strategy = self.spec.strategy.type
        message = f"{strategy} rollout of version {model.version} (stable {st.stable.version if st.stable else '-'})"
        self.record(model.version, "RolloutStarted", strategy, message)
        self.event("Normal", "RolloutStarted", message)

    def end_rollout(self) -> None:
        st = self.st
        st.candidate = None
        st.current_step = None
        st.step_started = None
        st.passing_since = None
        st.analysis_checkpoint = None

    def promote(self, how: str) -> None:
        st = self.st
        assert st.candidate is not None and st.stable is not None
        old, new = st.stable, st.candidate
        st.stable = new
        self.end_rollout()
        # The analysis was the candidate's: the P99ms column must not show it as the
        # stable version's latency; the Promoted entry keeps what the promotion rested on.
        last = st.last_analysis
        st.last_analysis = None
        if self.spec.strategy.type == "BlueGreen":
            delay = self.spec.strategy.blue_green_or_default().scale_down_delay_seconds
            st.previous = old
            st.scale_down_at = format_time(self.now + timedelta(seconds=delay))
            fate = (
                f"{old.version} kept as previous for {delay}s (abort switches back to it)"
                if delay > 0
                else f"{old.version} scaled down"
            )
        else:
            fate = f"{old.version} scaled down"
        message = f"version {new.version} promoted to stable ({how}); {fate}"
        if last is not None:
            message += f"; last analysis {analysis_text(last)}"
        self.record(new.version, "Promoted", how, message)
        self.event("Normal", "Promoted", message)

    def switch_back(self) -> None:
        """Blue-green abort within scaleDownDelaySeconds: the previous version is stable
        again at once; the version just promoted is rejected like an aborted candidate."""
        st = self.st
        assert st.previous is not None and st.stable is not None
        back, left = st.previous, st.stable
        if st.rejected_version is not None:
            # A rollout after the promotion was already aborted: switching back now would
            # forget that rejection, and the aborted version would roll out again.
            self.event(
                "Warning",
                "SwitchBackRefused",
                f"abort: version {st.rejected_version} was aborted after {left.version} was "
                f"promoted; {left.version} stays stable",
            )
            return
        if not self.server_ready(back.version):
            self.event(
                "Warning",
                "SwitchBackRefused",
                f"abort: the server of previous version {back.version} is not ready; "
                f"{left.version} stays stable",
            )
            return
        st.stable = back
        st.previous = None
        st.scale_down_at = None
        st.last_analysis = None
        st.rejected_version = left.version
        message = (
            f"version {left.version} aborted: manual abort within scaleDownDelaySeconds; "
            f"traffic switched back to {back.version} at once"
        )
        self.record(left.version, "Aborted", "SwitchedBack", message)
        self.event("Warning", "SwitchedBack", message)

    def reject(self, action: Literal["RolledBack", "Aborted"], reason: str, message: str) -> None:
        st = self.st
        assert st.candidate is not None
        version = st.candidate.version
        st.rejected_version = version
        self.end_rollout()
        full = (
            f"version {version} {'rolled back' if action == 'RolledBack' else 'aborted'}: {message}"
        )
        self.record(version, action, reason, full)
        self.event("Warning", action, full)

    # -- steps of the call -------------------------------------------------------

    def manual_actions(self) -> str | None:
        """Retry and abort act now; a promote request is returned for the strategy step."""
        st, md = self.st, self.md
        retry = pending_action(md, ANNOTATION_RETRY, st.handled_actions)
        if retry is not None:
            st.handled_actions[ANNOTATION_RETRY] = retry
            if st.rejected_version is not None:
                self.event(
                    "Normal", "Retried", f"version {st.rejected_version} will be rolled out again"
                )
                st.rejected_version = None
        abort = pending_action(md, ANNOTATION_ABORT, st.handled_actions)
        if abort is not None:
            st.handled_actions[ANNOTATION_ABORT] = abort
            if st.candidate is not None:
                self.reject("Aborted", "Aborted", "manual abort; traffic back to stable")
            elif st.previous is not None:
                self.switch_back()
        promote = pending_action(md, ANNOTATION_PROMOTE, st.handled_actions)
        if promote is not None and st.candidate is None:
            st.handled_actions[ANNOTATION_PROMOTE] = promote  # nothing to promote: consume it
            return None
        return promote

    def follow_wanted(self) -> None:
        st = self.st
        wanted = resolve(self.spec.model, self.obs)
        if isinstance(wanted, Unresolved):
            self.unresolved = wanted
            return
        model = wanted.model
        if self.spec.model.uri is not None:
            # A URI already served keeps the version it got: the card that names it may be
            # readable on one call and not on the next.
            model = next(
                (m for m in (st.candidate, st.stable) if m is not None and m.uri == model.uri),
                model,
            )
        if st.stable is None:
            st.stable = model
            message = f"version {model.version} deployed as stable from {model.uri}"
            self.record(model.version, "Deployed", "Initial", message)
            self.event("Normal", "Deployed", message)
            return
        if st.candidate is not None and model.version != st.candidate.version:
            why = "SpecReverted" if model.version == st.stable.version else "Superseded"
            message = f"rollout of {st.candidate.version} stopped: spec now wants {model.version}"
            self.record(st.candidate.version, "Aborted", why, message)
            self.event("Normal", why, message)
            self.end_rollout()
        if model.version == st.stable.version:
            st.rejected_version = None
            return
        if st.candidate is None and model.version != st.rejected_version:
            self.start_rollout(model)

    def drift_rollback(self) -> None:
        drift, st = self.candidate_drift(), self.st
        if drift is None or not drift.rollback or st.candidate is None:
            return
        score = "?" if drift.score is None else f"{drift.score:.3f}"
        self.reject(
            "RolledBack",
            "DriftDetected",
            f"DriftMonitor {drift.monitor} reports drift (score {score}) {drift.message}".strip(),
        )

    def analyse(self, table: RouteTable) -> None:
        st, obs = self.st, self.obs
        cand = st.candidate
        if cand is None or obs.router is None or obs.router.stats is None:
            return
        stats = obs.router.stats
        if stats.revision is not None and stats.revision != table.revision:
            self.wait(RUN_POLL_SECONDS)  # the router has not taken the table yet
            return
        role = self.candidate_role()
        interval = parse_duration(self.spec.analysis.interval)
        checkpoint = st.analysis_checkpoint
        since = parse_time(checkpoint.get("time")) if checkpoint else None
        if (
            checkpoint is None
            or since is None
            or checkpoint.get("version") != cand.version
            or (checkpoint.get("variant") != role)
        ):
            st.analysis_checkpoint = snapshot(stats, role, cand.version, self.now)
            self.wait(interval)
            return
        elapsed = seconds_between(since, self.now)
        if elapsed < interval:
            self.wait(interval - elapsed)
            return
        measured = measure(checkpoint, stats, role, cand.version)
        st.analysis_checkpoint = snapshot(stats, role, cand.version, self.now)
        self.wait(interval)
        if measured is None:
            return  # the router restarted: this window is lost, the next one counts
        failures = st.last_analysis.failures if st.last_analysis else 0
        result = judge(
            measured,
            self.spec.analysis,
            shadow_mode=self.spec.strategy.type == "Shadow",
            drift_score=self.drift_score(),
            failures_before=failures,
            now=self.now,
            unavailable=self.server_failure(cand.version),
        )
        st.last_analysis = result
        if result.verdict == "Pass" and st.passing_since is None:
            st.passing_since = self.stamp
        if result.verdict != "Fail":
            return
        st.passing_since = None
        limit = self.spec.analysis.failure_limit
        if result.failures > limit and self.spec.auto_rollback:
            self.reject(
                "RolledBack",
                "AnalysisFailed",
                f"{result.message} ({_failed_analyses(result.failures)}, failureLimit {limit})",
            )
        else:
            self.event(
                "Warning",
                "AnalysisFailed",
                f"version {cand.version}: {result.message} "
                f"(failure {result.failures}, limit {limit})",
            )

    def drift_score(self) -> float | None:
        drift = self.candidate_drift()
        return None if drift is None else drift.score

    def healthy_analysis(self) -> bool:
        shadow_mode = self.spec.strategy.type == "Shadow"
        last = self.st.last_analysis
        if not has_slos(self.spec.analysis, shadow_mode=shadow_mode):
            return last is None or last.verdict != "Fail"
        return last is not None and last.verdict == "Pass"

    def canary_weight(self) -> int:
        steps = self.spec.strategy.canary_or_default().steps
        done = steps[: self.st.current_step or 0]
        weights = [s.set_weight for s in done if s.set_weight is not None]
        return weights[-1] if weights else 0

    def advance(self, promote: str | None) -> None:
        """Move the rollout on as far as the strategy allows right now."""
        st = self.st
        cand = st.candidate
        assert cand is not None
        last = st.last_analysis
        failure = self.server_failure(cand.version)
        if failure and last is not None and last.failures > self.spec.analysis.failure_limit:
            self.halted = True  # autoRollback is off: wait for a person
            return
        if not self.server_ready(cand.version):
            # The step's clock keeps running (a restart of `pilotage up` stops and starts
            # the servers): it was only ever started once the candidate was ready.
            self.failing = failure or ""
            self.waiting = (
                failure or f"waiting for the server of candidate {cand.version} to be ready"
            )
            self.wait(RUN_POLL_SECONDS)
            return
        if st.step_started is None:
            st.step_started = self.stamp
        if promote is not None:
            st.handled_actions[ANNOTATION_PROMOTE] = promote
            if is_full_promotion(promote) or self.spec.strategy.type != "Canary":
                self.promote("manual")
                return
        if last is not None and last.failures > self.spec.analysis.failure_limit:
            self.halted = True  # autoRollback is off: wait for a person
            return
        kind = self.spec.strategy.type
        if kind == "Canary":
            self.advance_canary(skip_pause=promote is not None)
        elif kind == "BlueGreen":
            self.advance_blue_green()
        else:
            self.advance_shadow()

    def step_elapsed(self) -> float:
        started = parse_time(self.st.step_started) or self.now
        return seconds_between(started, self.now)

    def advance_canary(self, skip_pause: bool) -> None:
        st = self.st
        steps = self.spec.strategy.canary_or_default().steps
        i = st.current_step or 0
        while i < len(steps):
            step = steps[i]
            if step.set_weight is not None:
                i += 1
                st.current_step, st.step_started = i, self.stamp
                self.event(
                    "Normal",
                    "StepReached",
                    f"canary {st.candidate.version if st.candidate else '?'} at weight "
                    f"{step.set_weight} (step {i} of {len(steps)})",
                )
                continue
            assert step.pause is not None
            if skip_pause:
                skip_pause = False
                i += 1
                st.current_step, st.step_started = i, self.stamp
                self.event(
                    "Normal", "StepPromoted", f"pause at step {i} of {len(steps)} ended by promote"
                )
                continue
            if step.pause.duration is None:
                self.paused = True
                # the condition and the event count steps the same way (from 1)
                paused = (
                    f"paused at step {i + 1} of {len(steps)} (weight {self.canary_weight()}): "
                    "waiting for promote"
                )
                cand = st.candidate.version if st.candidate else "?"
                self.waiting = f"rollout of {cand} {paused}"
                if self.old.phase != "Paused" or self.old.current_step != i:
                    self.event("Normal", "Paused", paused)
                return
            remaining = parse_duration(step.pause.duration) - self.step_elapsed()
            if remaining > 0:
                self.wait(remaining)
                return
            i += 1
            st.current_step, st.step_started = i, self.stamp
        self.promote("steps completed")

    def advance_blue_green(self) -> None:
        """autoPromotionSeconds count from the first passing analysis with no failed one
        after it (an inconclusive window, e.g. preview traffic that stopped, does not reset
        them); without SLOs nothing can pass, so they count from the preview's readiness."""
        seconds = self.spec.strategy.blue_green_or_default().auto_promotion_seconds
        if seconds is None:
            self.paused = True
            self.waiting = "preview ready (header x-pilotage-variant: preview); waiting for promote"
            return
        if has_slos(self.spec.analysis, shadow_mode=False):
            since = parse_time(self.st.passing_since)
            if since is None:
                self.waiting = (
                    "preview waits for a passing analysis (send it requests with header "
                    "x-pilotage-variant: preview)"
                )
                return
        else:
            since = parse_time(self.st.step_started) or self.now
        remaining = seconds - seconds_between(since, self.now)
        if remaining > 0:
            due = format_time(since + timedelta(seconds=seconds))
            self.waiting = f"preview passed analysis; switching at {due} unless an analysis fails"
            self.wait(remaining)
            return
        self.promote("autoPromotionSeconds")

    def advance_shadow(self) -> None:
        shadow = self.spec.strategy.shadow_or_default()
        remaining = parse_duration(shadow.duration) - self.step_elapsed()
        if remaining > 0:
            self.wait(remaining)
            return
        if not self.healthy_analysis():
            self.waiting = "comparison not conclusive yet; still mirroring"
            return
        if shadow.promote:
            self.promote("comparison passed")
        else:
            self.paused = True
            self.waiting = "comparison passed; holding for a manual promote"

    def scale_down(self) -> None:
        st = self.st
        if st.previous is None:
            return
        due = parse_time(st.scale_down_at)
        if due is not None and self.now < due:
            self.wait(seconds_between(self.now, due))
            return
        delay = self.spec.strategy.blue_green_or_default().scale_down_delay_seconds
        message = (
            f"previous version {st.previous.version} scaled down "
            f"(scaleDownDelaySeconds {delay} passed); switch-back no longer possible"
        )
        st.previous = None
        st.scale_down_at = None
        self.event("Normal", "ScaledDown", message)

    def table(self) -> RouteTable | None:
        st = self.st
        if st.stable is None:
            return None
        cand = st.candidate
        routable = cand.version if cand is not None and self.server_ready(cand.version) else None
        weight = self.canary_weight() if routable else 0
        return build_table(self.spec, st.stable.version, routable, weight)

    def actions(self, table: RouteTable | None) -> list[Action]:
        st, spec, name = self.st, self.spec, self.md.name
        out: list[Action] = [
            EnsureRouter(
                name,
                spec.router.replicas,
                spec.router.resources.dump(),
                variant_token_secret=spec.router.variant_token_secret,
                feedback_token_secret=spec.router.feedback_token_secret,
            )
        ]
        settings = ServerSettings(
            threads=spec.server.threads,
            max_batch_size=spec.server.max_batch_size,
            max_batch_wait_us=spec.server.max_batch_wait_us,
            strict_schema=spec.server.strict_schema,
            resources=spec.server.resources.dump(),
        )
        wanted = [m for m in (st.stable, st.candidate, st.previous) if m is not None]
        versions = {m.version for m in wanted}
        for model in wanted:
            out.append(EnsureServer(name, model.version, model.uri, spec.replicas, settings))
        if (
            table is not None
            and st.stable is not None
            and (self.server_ready(st.stable.version) or self.old.traffic)
        ):
            out.append(SetRoutes(name, table))
            st.traffic = traffic(table)
            st.traffic_summary = traffic_summary(table)
        else:
            st.traffic = {}
            st.traffic_summary = ""
        settled = self.router_serves(table)
        for server in self.obs.servers:
            if server.version in versions:
                continue
            # A rejected candidate goes at once: the router retries its failed requests
            # on stable. A former stable has no such fallback.
            if settled or server.version == st.rejected_version:
                out.append(RemoveServer(name, server.version))
        return out

    def router_serves(self, table: RouteTable | None) -> bool:
        """Whether the router already routes by `table`, so a server the table no longer
        names gets no more requests. Until it reports that revision (a pushed table can
        fail over to the ConfigMap, which takes a while to reach the pod) the old server
        stays: removing it first failed every request still sent to it. When the router
        cannot tell (not ready, no stats), nothing waits."""
        router = self.obs.router
        if table is None or not table.revision or router is None or not router.ready:
            return True
        if router.stats is None or router.stats.revision is None:
            return True
        return router.stats.revision == table.revision

    def conclude(
        self, problem: str | None, rejection: str | None
    ) -> tuple[Phase, bool | None, str, str, bool]:
        """phase, Ready, reason, message, stalled. `rejection`: why the router refused the
        routing table (it keeps serving its previous one meanwhile)."""
        st = self.st
        refused: tuple[Phase, bool | None, str, str, bool] = (
            "Progressing",
            False,
            TABLE_REJECTED,
            f"router rejected the routing table: {rejection}",
            False,
        )
        if problem:
            return ("Degraded" if st.stable else "Pending", False, "InvalidSpec", problem, True)
        unresolved = self.unresolved
        if st.stable is None:
            assert unresolved is not None
            return ("Pending", False, unresolved.reason, unresolved.message, unresolved.refused)
        if st.candidate is not None:
            cand = st.candidate.version
            if self.halted:
                last = st.last_analysis
                return (
                    "Degraded",
                    False,
                    "AnalysisFailed",
                    f"candidate {cand} failed analysis ({last.message if last else ''}); "
                    "autoRollback is off: promote or abort",
                    True,
                )
            if rejection:
                return refused
            if self.failing:
                return ("Progressing", False, SERVER_FAILING, self.failing, False)
            if self.paused:  # every pause says why in self.waiting
                return ("Paused", False, "Paused", self.waiting, False)
            detail = self.waiting or f"rolling out {cand}: {st.traffic_summary or 'no traffic yet'}"
            return ("Progressing", False, "RolloutInProgress", detail, False)
        if rejection:
            return refused
        if st.rejected_version is not None:
            entry = next(
                (
                    h
                    for h in reversed(st.history)
                    if h.version == st.rejected_version and h.action in ("RolledBack", "Aborted")
                ),
                None,
            )
            reason = "RolledBack" if entry is None or entry.action == "RolledBack" else "Aborted"
            message = entry.message if entry else f"version {st.rejected_version} was rejected"
            return (
                "Degraded",
                False,
                reason,
                f"{message}; serving {st.stable.version}; retry or ship a new version",
                True,
            )
        if unresolved is not None:
            if unresolved.refused:
                return (
                    "Degraded",
                    False,
                    unresolved.reason,
                    f"{unresolved.message}; serving {st.stable.version}",
                    True,
                )
            return (
                "Progressing",
                False,
                unresolved.reason,
                f"{unresolved.message}; serving {st.stable.version}",
                False,
            )
        failure = self.server_failure(st.stable.version)
        if failure:
            return ("Degraded", False, SERVER_FAILING, failure, False)
        if not self.server_ready(st.stable.version):
            return (
                "Progressing",
                False,
                "Deploying",
                f"waiting for the server of version {st.stable.version}",
                False,
            )
        if not self.router_ready():
            return ("Progressing", False, "Deploying", "waiting for the router", False)
        return (
            "Healthy",
            True,
            "Healthy",
            f"serving version {st.stable.version} ({st.traffic_summary})",
            False,
        )


def reconcile_modeldeployment(
    md: ModelDeployment, obs: ModelDeploymentObservation, now: datetime
) -> Result[ModelDeploymentStatus]:
    r = _Reconcile(md, obs, now)
    st = r.st
    if obs.router is not None and obs.router.endpoint:
        if st.endpoint and st.endpoint != obs.router.endpoint:
            why = obs.router.endpoint_problem or "the router was restarted on another port"
            st.endpoint_note = (
                f"endpoint moved from {st.endpoint} to {obs.router.endpoint} at {r.stamp}: {why}"
            )[:1024]
            r.event("Warning", "EndpointChanged", st.endpoint_note)
        st.endpoint = obs.router.endpoint
    problem = spec_problem(md.spec)
    if not problem:
        promote = r.manual_actions()
        r.follow_wanted()
        r.drift_rollback()
        if st.candidate is not None:
            current = r.table()
            cand = st.candidate.version
            if current is not None and (r.server_ready(cand) or r.server_failure(cand)):
                r.analyse(current)
            if st.candidate is not None:
                r.advance(promote)
        r.scale_down()
    table = r.table()
    actions = r.actions(table)
    rejection = None if problem else r.router_rejection(table)
    phase, ready, reason, message, stalled = r.conclude(problem, rejection)
    st.phase = phase
    st.message = message[:1024]
    st.conditions = reconciled_conditions(
        st.conditions,
        ready=ready,
        reason=reason,
        message=message,
        stalled=stalled,
        generation=md.generation,
        now=r.stamp,
    )
    if problem and (r.old.phase != phase or st.message != r.old.message[:1024]):
        r.event("Warning", "InvalidSpec", problem)
    if reason == TABLE_REJECTED and st.message != r.old.message[:1024]:
        r.event("Warning", TABLE_REJECTED, message)
    if reason == SERVER_FAILING and st.message != r.old.message[:1024]:
        r.event("Warning", SERVER_FAILING, message)
    if phase == "Healthy" and r.old.phase != "Healthy":
        r.event("Normal", "Healthy", message)
    r.wait(STEADY_POLL_SECONDS)
    if ready is not True and not stalled:
        r.wait(RUN_POLL_SECONDS)
    requeue = min(r.timers) if r.timers else None
    return Result(st, actions, r.events, requeue)
