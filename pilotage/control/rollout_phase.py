"""The phase and Ready condition a ModelDeployment's state reads as, after a call."""

from __future__ import annotations

from typing import Literal

from pilotage.control.common import Readiness
from pilotage.control.rollout import Rollout

Phase = Literal["Pending", "Progressing", "Paused", "Healthy", "Degraded"]
TABLE_REJECTED = "RoutingTableRejected"
SERVER_FAILING = "ServerFailing"
"""A variant's server exits each time it is started (reason of Ready=False)."""


def _refused(rejection: str) -> tuple[Phase, Readiness]:
    return "Progressing", Readiness(
        False, TABLE_REJECTED, f"router rejected the routing table: {rejection}"
    )


def _rollout_phase(r: Rollout, rejection: str | None) -> tuple[Phase, Readiness] | None:
    """While a candidate is rolled out."""
    st = r.st
    if st.candidate is None:
        return None
    cand = st.candidate.version
    if r.halted:
        last = st.last_analysis
        return "Degraded", Readiness(
            False,
            "AnalysisFailed",
            f"candidate {cand} failed analysis ({last.message if last else ''}); "
            "autoRollback is off: promote or abort",
            stalled=True,
        )
    if rejection:
        return _refused(rejection)
    if r.failing:
        return "Progressing", Readiness(False, SERVER_FAILING, r.failing)
    if r.paused:  # every pause says why in r.waiting
        return "Paused", Readiness(False, "Paused", r.waiting)
    detail = r.waiting or f"rolling out {cand}: {st.traffic_summary or 'no traffic yet'}"
    return "Progressing", Readiness(False, "RolloutInProgress", detail)


def _rejected_phase(r: Rollout) -> tuple[Phase, Readiness] | None:
    """After the latest version was rolled back or aborted."""
    st = r.st
    if st.rejected_version is None or st.stable is None:
        return None
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
    return "Degraded", Readiness(
        False,
        reason,
        f"{message}; serving {st.stable.version}; retry or ship a new version",
        stalled=True,
    )


def _serving_phase(r: Rollout) -> tuple[Phase, Readiness]:
    """With nothing rolled out or rejected: the stable version and the router."""
    st = r.st
    assert st.stable is not None
    unresolved = r.unresolved
    serving = f"serving {st.stable.version}"
    if unresolved is not None:
        message = f"{unresolved.message}; {serving}"
        if unresolved.refused:
            return "Degraded", Readiness(False, unresolved.reason, message, stalled=True)
        return "Progressing", Readiness(False, unresolved.reason, message)
    failure = r.server_failure(st.stable.version)
    if failure:
        return "Degraded", Readiness(False, SERVER_FAILING, failure)
    if not r.server_ready(st.stable.version):
        return "Progressing", Readiness(
            False, "Deploying", f"waiting for the server of version {st.stable.version}"
        )
    if not r.router_ready():
        return "Progressing", Readiness(False, "Deploying", "waiting for the router")
    return "Healthy", Readiness(
        True, "Healthy", f"serving version {st.stable.version} ({st.traffic_summary})"
    )


def conclude(r: Rollout, problem: str | None, rejection: str | None) -> tuple[Phase, Readiness]:
    """The phase and readiness. `rejection`: why the router refused the routing table
    (it keeps serving its previous one meanwhile)."""
    st = r.st
    if problem:
        return ("Degraded" if st.stable else "Pending"), Readiness(
            False, "InvalidSpec", problem, stalled=True
        )
    if st.stable is None:
        unresolved = r.unresolved
        assert unresolved is not None
        return "Pending", Readiness(
            False, unresolved.reason, unresolved.message, stalled=unresolved.refused
        )
    during = _rollout_phase(r, rejection)
    if during is not None:
        return during
    if rejection:
        return _refused(rejection)
    return _rejected_phase(r) or _serving_phase(r)
