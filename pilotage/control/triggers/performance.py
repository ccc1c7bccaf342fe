"""Trigger `performance`: live quality from feedback breached `spec.performance`.

Each full feedback window (`minSamples` labelled requests since the previous one, from
differences of the router's cumulative counters) sets `status.live`. A breach raises a
`PerformanceDropped` warning and stays pending until a retrain takes it, or a healthy
window clears it (a breach inside the cooldown is acted on when it ends)."""

from __future__ import annotations

from typing import Any

from pilotage.api.driftmonitor import LiveMetrics, PerformanceSpec
from pilotage.control.triggers.base import RetrainTrigger, Tick
from pilotage.control.types import Event, FeedbackStats

FEEDBACK = "feedback"
"""Checkpoint key: the feedback counters at the start of the current window."""
PENDING_PERFORMANCE = "pendingPerformance"
"""Checkpoint key: a breach no retrain has taken yet."""


def _feedback_doc(fb: FeedbackStats) -> dict[str, Any]:
    return {
        "labelled": fb.labelled,
        "correct": fb.correct,
        "valued": fb.valued,
        "absErrorSum": fb.abs_error_sum,
    }


def judge_window(tick: Tick, perf: PerformanceSpec, fb: FeedbackStats) -> tuple[bool, str | None]:
    """Whether a full feedback window was judged (setting `status.live`), and its breach."""
    cp, st = tick.checkpoint, tick.st
    before = cp.get(FEEDBACK)
    if not isinstance(before, dict) or any(
        getattr(fb, counter) < before.get(counter, 0)
        for counter in ("labelled", "correct", "valued")
    ):
        cp[FEEDBACK] = _feedback_doc(fb)
        return False, None
    labelled = fb.labelled - int(before.get("labelled", 0))
    valued = fb.valued - int(before.get("valued", 0))
    samples = labelled if perf.metric == "accuracy" else valued
    if samples < perf.min_samples:
        return False, None
    cp[FEEDBACK] = _feedback_doc(fb)
    if perf.metric == "accuracy":
        accuracy = (fb.correct - int(before.get("correct", 0))) / labelled
        st.live = LiveMetrics(samples=labelled, accuracy=accuracy)
        if perf.min is not None and accuracy < perf.min:
            return True, (
                f"live accuracy {accuracy:.3f} < min {perf.min:g} over {labelled} labelled requests"
            )
        return True, None
    mae = (fb.abs_error_sum - float(before.get("absErrorSum", 0.0))) / valued
    st.live = LiveMetrics(samples=valued, mae=mae)
    if perf.max is not None and mae > perf.max:
        return True, f"live MAE {mae:.4g} > max {perf.max:g} over {valued} labelled requests"
    return True, None


class PerformanceTrigger(RetrainTrigger):
    name = "performance"
    per_version = (FEEDBACK, PENDING_PERFORMANCE)

    def fired(self, tick: Tick) -> str | None:
        perf, fb, cp = tick.spec.performance, tick.obs.feedback, tick.checkpoint
        if perf is None:
            cp.pop(PENDING_PERFORMANCE, None)
            return None
        if fb is not None:
            judged, breach = judge_window(tick, perf, fb)
            if breach is not None:
                cp[PENDING_PERFORMANCE] = breach
                tick.events.append(Event("Warning", "PerformanceDropped", breach))
            elif judged:
                cp.pop(PENDING_PERFORMANCE, None)  # a healthy window came after the breach
        pending = cp.get(PENDING_PERFORMANCE)
        return str(pending) if pending else None

    def taken(self, tick: Tick) -> None:
        tick.checkpoint.pop(PENDING_PERFORMANCE, None)

    def ignored(self, tick: Tick) -> None:
        self.taken(tick)  # nothing to retrain with: do not keep it
