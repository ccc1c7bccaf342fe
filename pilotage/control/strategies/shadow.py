"""Shadow: the candidate receives a copy of `percent` of the requests; its answers are
never returned, only compared with stable's (agreement, latency) for `duration`. Then a
healthy comparison promotes (or holds for a promote when `promote` is false); an
inconclusive one keeps mirroring."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pilotage.api.common import parse_duration
from pilotage.api.modeldeployment import ModelDeploymentSpec
from pilotage.control.strategies.base import RolloutStrategy
from pilotage.control.types import ShadowRoute

if TYPE_CHECKING:
    from pilotage.control.rollout import Rollout


class Shadow(RolloutStrategy):
    type = "Shadow"
    candidate_role = "shadow"
    mode = "shadow"
    idle_mode = "canary"  # nothing to mirror yet: the router needs a shadow variant
    compares = True

    def problem(self, spec: ModelDeploymentSpec) -> str | None:
        if parse_duration(spec.strategy.shadow_or_default().duration) <= 0:
            return "spec.strategy.shadow.duration: must be longer than 0s"
        return None

    def mirror(self, spec: ModelDeploymentSpec) -> ShadowRoute | None:
        return ShadowRoute(self.candidate_role, spec.strategy.shadow_or_default().percent)

    def advance(self, rollout: Rollout, promote_requested: bool) -> None:
        shadow = rollout.spec.strategy.shadow_or_default()
        remaining = parse_duration(shadow.duration) - rollout.step_elapsed()
        if remaining > 0:
            rollout.wait(remaining)
            return
        if not rollout.healthy_analysis():
            rollout.waiting = "comparison not conclusive yet; still mirroring"
            return
        if shadow.promote:
            rollout.promote("comparison passed")
        else:
            rollout.paused = True
            rollout.waiting = "comparison passed; holding for a manual promote"
