"""The working state of one ModelDeployment reconcile call, and the transitions of a
rollout (start, promote, reject, switch back, scale down) that every strategy shares."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pilotage.api.modeldeployment import (
    AnalysisResult,
    HistoryEntry,
    ModelDeployment,
    ModelDeploymentStatus,
    ModelRef,
)
from pilotage.control.analysis import has_slos
from pilotage.control.common import format_time, parse_time, seconds_between
from pilotage.control.resolve import Unresolved
from pilotage.control.strategies import strategy_for
from pilotage.control.types import Event, ModelDeploymentObservation

HISTORY_LIMIT = 20


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


class Rollout:
    """The working state of one call; nothing outlives it."""

    def __init__(self, md: ModelDeployment, obs: ModelDeploymentObservation, now: datetime):
        self.md = md
        self.spec = md.spec
        self.strategy = strategy_for(md.spec)
        self.obs = obs
        self.now = now
        self.stamp = format_time(now)
        self.old = md.status or ModelDeploymentStatus()
        self.st = self.old.model_copy(deep=True)
        self.st.observed_generation = md.generation
        self.events: list[Event] = []
        self.timers: list[float] = []
        self.paused = False
        """The rollout waits for a person (phase Paused; `waiting` says why)."""
        self.halted = False
        """The analysis failed beyond the limit with autoRollback off."""
        self.waiting = ""
        """Why the rollout does not move on now, when it does not."""
        self.failing = ""
        """Why the candidate's server cannot start, when it cannot."""
        self.unresolved: Unresolved | None = None

    # -- observations ------------------------------------------------------------

    def server_ready(self, version: str) -> bool:
        if any(s.version == version and s.ready for s in self.obs.servers):
            return True
        # autoscaled to zero: no server runs, yet the version serves (the router holds
        # its requests and the first one starts a replica)
        return self.spec.autoscaling is not None and any(
            e.version == version and e.desired == 0 for e in self.old.replicas.values()
        )

    def server_failure(self, version: str) -> str | None:
        """Why the version's server cannot start (crash loop), or None."""
        for s in self.obs.servers:
            if s.version == version and s.failing and not s.ready:
                restarts = f" (restarted {s.restarts} times)" if s.restarts else ""
                return f"server of version {version} cannot start: {s.message}{restarts}"
        return None

    def router_ready(self) -> bool:
        return self.obs.router is not None and self.obs.router.ready

    def step_elapsed(self) -> float:
        """Seconds since the current step (or pause, or wait) began."""
        started = parse_time(self.st.step_started) or self.now
        return seconds_between(started, self.now)

    def healthy_analysis(self) -> bool:
        """Without SLOs: no failed analysis; with SLOs: the last one passed."""
        last = self.st.last_analysis
        if not has_slos(self.spec.analysis, shadow_mode=self.strategy.compares):
            return last is None or last.verdict != "Fail"
        return last is not None and last.verdict == "Pass"

    def rollout_started(self) -> datetime | None:
        cand = self.st.candidate
        if cand is None:
            return None
        for entry in reversed(self.st.history):
            if entry.version == cand.version and entry.action == "RolloutStarted":
                return parse_time(entry.time)
        return None

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

    def wait(self, seconds: float) -> None:
        """Look again in at most this many seconds."""
        self.timers.append(max(0.05, seconds))

    # -- transitions -------------------------------------------------------------

    def start_rollout(self, model: ModelRef) -> None:
        st = self.st
        st.candidate = model
        st.current_step = self.strategy.first_step
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
        fate = self.strategy.promoted(self, old)
        message = f"version {new.version} promoted to stable ({how}); {fate}"
        if last is not None:
            message += f"; last analysis {analysis_text(last)}"
        self.record(new.version, "Promoted", how, message)
        self.event("Normal", "Promoted", message)

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

    def switch_back(self) -> None:
        """Abort while a former stable is kept up (`status.previous`, blue-green within
        scaleDownDelaySeconds): it is stable again at once; the version just promoted is
        rejected like an aborted candidate."""
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

    def scale_down(self) -> None:
        """The former stable kept as `status.previous` goes once `scaleDownAt` passed."""
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
