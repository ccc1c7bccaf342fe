"""Trigger `drift`: the data set drifted in `consecutive` checks in a row.

One drift episode (from `driftingSince`) retrains once; drift that stops and starts
again is a new episode."""

from __future__ import annotations

from pilotage.control.observe import DRIFTING_SINCE
from pilotage.control.triggers.base import RetrainTrigger, Tick

RETRAINED_FOR = "retrainedFor"
"""Checkpoint key: the `driftingSince` of the episode a retrain was created for."""


class DriftTrigger(RetrainTrigger):
    name = "drift"
    per_version = (RETRAINED_FOR,)

    def fired(self, tick: Tick) -> str | None:
        st, cp = tick.st, tick.checkpoint
        if (
            st.phase == "Drifting"
            and st.consecutive_drifting >= tick.spec.consecutive
            and cp.get(RETRAINED_FOR) != cp.get(DRIFTING_SINCE)
        ):
            return f"data-set drift: {tick.drifted_text()}"
        return None

    def taken(self, tick: Tick) -> None:
        tick.checkpoint[RETRAINED_FOR] = tick.checkpoint.get(DRIFTING_SINCE)
