"""BlueGreen: the candidate (green) gets no user traffic, only requests that ask for
the `preview` variant; then all traffic switches at once.

`autoPromotionSeconds` count from the first passing analysis with no failed one after it
(an inconclusive window, e.g. preview traffic that stopped, does not reset them); without
SLOs nothing can pass, so they count from the preview's readiness. Without it the switch
waits for a promote. The old stable stays up as `status.previous` for
`scaleDownDelaySeconds`: an abort meanwhile switches back to it at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from pilotage.api.modeldeployment import ModelRef
from pilotage.control.analysis import has_slos
from pilotage.control.common import format_time, parse_time, seconds_between
from pilotage.control.strategies.base import RolloutStrategy

if TYPE_CHECKING:
    from pilotage.control.rollout import Rollout


class BlueGreen(RolloutStrategy):
    type = "BlueGreen"
    candidate_role = "preview"
    mode = "bluegreen"

    def advance(self, rollout: Rollout, promote_requested: bool) -> None:
        seconds = rollout.spec.strategy.blue_green_or_default().auto_promotion_seconds
        if seconds is None:
            rollout.paused = True
            rollout.waiting = (
                "preview ready (header x-pilotage-variant: preview); waiting for promote"
            )
            return
        if has_slos(rollout.spec.analysis, shadow_mode=False):
            since = parse_time(rollout.st.passing_since)
            if since is None:
                rollout.waiting = (
                    "preview waits for a passing analysis (send it requests with header "
                    "x-pilotage-variant: preview)"
                )
                return
        else:
            since = parse_time(rollout.st.step_started) or rollout.now
        remaining = seconds - seconds_between(since, rollout.now)
        if remaining > 0:
            due = format_time(since + timedelta(seconds=seconds))
            rollout.waiting = (
                f"preview passed analysis; switching at {due} unless an analysis fails"
            )
            rollout.wait(remaining)
            return
        rollout.promote("autoPromotionSeconds")

    def promoted(self, rollout: Rollout, old: ModelRef) -> str:
        delay = rollout.spec.strategy.blue_green_or_default().scale_down_delay_seconds
        rollout.st.previous = old
        rollout.st.scale_down_at = format_time(rollout.now + timedelta(seconds=delay))
        if delay > 0:
            return f"{old.version} kept as previous for {delay}s (abort switches back to it)"
        return f"{old.version} scaled down"
