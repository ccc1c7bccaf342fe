"""Canary: shift user traffic to the candidate in steps (`setWeight`, `pause`).

A pause with a duration waits that long from when the step was reached; one without
waits for a promote. `pilotage.dev/promote: full` promotes at once; any other value
takes one step (ending the pause it is at). After the last step the candidate is promoted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pilotage.api.common import parse_duration
from pilotage.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from pilotage.control.common import is_full_promotion
from pilotage.control.strategies.base import RolloutStrategy

if TYPE_CHECKING:
    from pilotage.control.rollout import Rollout


class Canary(RolloutStrategy):
    type = "Canary"
    candidate_role = "canary"
    mode = "canary"
    shares_traffic = True
    first_step = 0

    def weight(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> int:
        """The last `setWeight` of the steps done so far."""
        steps = spec.strategy.canary_or_default().steps
        done = steps[: status.current_step or 0]
        weights = [s.set_weight for s in done if s.set_weight is not None]
        return weights[-1] if weights else 0

    def sticky_header(self, spec: ModelDeploymentSpec) -> str | None:
        return spec.strategy.canary.sticky_header if spec.strategy.canary else None

    def promotes_at_once(self, value: str) -> bool:
        return is_full_promotion(value)

    def advance(self, rollout: Rollout, promote_requested: bool) -> None:
        st = rollout.st
        steps = rollout.spec.strategy.canary_or_default().steps
        skip_pause = promote_requested
        i = st.current_step or 0
        while i < len(steps):
            step = steps[i]
            if step.set_weight is not None:
                i += 1
                st.current_step, st.step_started = i, rollout.stamp
                rollout.event(
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
                st.current_step, st.step_started = i, rollout.stamp
                rollout.event(
                    "Normal", "StepPromoted", f"pause at step {i} of {len(steps)} ended by promote"
                )
                continue
            if step.pause.duration is None:
                rollout.paused = True
                # the condition and the event count steps the same way (from 1)
                paused = (
                    f"paused at step {i + 1} of {len(steps)} "
                    f"(weight {self.weight(rollout.spec, st)}): waiting for promote"
                )
                cand = st.candidate.version if st.candidate else "?"
                rollout.waiting = f"rollout of {cand} {paused}"
                if rollout.old.phase != "Paused" or rollout.old.current_step != i:
                    rollout.event("Normal", "Paused", paused)
                return
            remaining = parse_duration(step.pause.duration) - rollout.step_elapsed()
            if remaining > 0:
                rollout.wait(remaining)
                return
            i += 1
            st.current_step, st.step_started = i, rollout.stamp
        rollout.promote("steps completed")
