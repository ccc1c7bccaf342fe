"""Judging the candidate of a rollout: a DriftMonitor's rollback signal, and the analysis
of each interval of router stats against `spec.analysis`, rolling it back on failure."""

from __future__ import annotations

from pilotage.api.common import parse_duration
from pilotage.control.analysis import judge, measure, snapshot
from pilotage.control.common import RUN_POLL_SECONDS, parse_time, seconds_between
from pilotage.control.rollout import Rollout
from pilotage.control.types import DriftSignal, RouteTable


def _failed_analyses(count: int) -> str:
    return f"{count} failed analysis" if count == 1 else f"{count} failed analyses"


def candidate_drift(r: Rollout) -> DriftSignal | None:
    """The drift signal that may count against the candidate: one about the stable
    version (a monitor not yet past a promotion still speaks of an earlier one) whose
    drift did not begin before this rollout did (then it is not the candidate's doing)."""
    drift, stable = r.obs.drift, r.st.stable
    if drift is None or stable is None or drift.version != stable.version:
        return None
    started = r.rollout_started()
    if drift.since is not None and started is not None and drift.since <= started:
        return None
    return drift


def drift_rollback(r: Rollout) -> None:
    """Roll the candidate back when a DriftMonitor asks for it."""
    drift, st = candidate_drift(r), r.st
    if drift is None or not drift.rollback or st.candidate is None:
        return
    score = "?" if drift.score is None else f"{drift.score:.3f}"
    r.reject(
        "RolledBack",
        "DriftDetected",
        f"DriftMonitor {drift.monitor} reports drift (score {score}) {drift.message}".strip(),
    )


def analyse(r: Rollout, table: RouteTable) -> None:
    """Judge the interval that ended (if one did) from the difference of the router's
    counters for the candidate's variant since the checkpoint; roll back beyond
    `failureLimit` when `autoRollback` is on."""
    st, obs = r.st, r.obs
    cand = st.candidate
    if cand is None or obs.router is None or obs.router.stats is None:
        return
    stats = obs.router.stats
    if stats.revision is not None and stats.revision != table.revision:
        r.wait(RUN_POLL_SECONDS)  # the router has not taken the table yet
        return
    role = r.strategy.candidate_role
    interval = parse_duration(r.spec.analysis.interval)
    checkpoint = st.analysis_checkpoint
    since = parse_time(checkpoint.get("time")) if checkpoint else None
    if (
        checkpoint is None
        or since is None
        or checkpoint.get("version") != cand.version
        or (checkpoint.get("variant") != role)
    ):
        st.analysis_checkpoint = snapshot(stats, role, cand.version, r.now)
        r.wait(interval)
        return
    elapsed = seconds_between(since, r.now)
    if elapsed < interval:
        r.wait(interval - elapsed)
        return
    measured = measure(checkpoint, stats, role, cand.version)
    st.analysis_checkpoint = snapshot(stats, role, cand.version, r.now)
    r.wait(interval)
    if measured is None:
        return  # the router restarted: this window is lost, the next one counts
    failures = st.last_analysis.failures if st.last_analysis else 0
    drift = candidate_drift(r)
    result = judge(
        measured,
        r.spec.analysis,
        shadow_mode=r.strategy.compares,
        drift_score=None if drift is None else drift.score,
        failures_before=failures,
        now=r.now,
        unavailable=r.server_failure(cand.version),
    )
    st.last_analysis = result
    if result.verdict == "Pass" and st.passing_since is None:
        st.passing_since = r.stamp
    if result.verdict != "Fail":
        return
    st.passing_since = None
    limit = r.spec.analysis.failure_limit
    if result.failures > limit and r.spec.auto_rollback:
        r.reject(
            "RolledBack",
            "AnalysisFailed",
            f"{result.message} ({_failed_analyses(result.failures)}, failureLimit {limit})",
        )
    else:
        r.event(
            "Warning",
            "AnalysisFailed",
            f"version {cand.version}: {result.message} (failure {result.failures}, limit {limit})",
        )
