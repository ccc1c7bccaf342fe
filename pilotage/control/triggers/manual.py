"""Trigger `manual`: a new value of the annotation `pilotage.dev/retrain`.

Each distinct value is acted on once (`handledRetrain` in the checkpoint), also when
there is no template to retrain with (then a `RetrainIgnored` warning says so)."""

from __future__ import annotations

from pilotage.control.common import ANNOTATION_RETRAIN
from pilotage.control.triggers.base import RetrainTrigger, Tick
from pilotage.control.types import Event

HANDLED_RETRAIN = "handledRetrain"


class ManualTrigger(RetrainTrigger):
    name = "manual"

    def fired(self, tick: Tick) -> str | None:
        token = tick.dm.metadata.annotations.get(ANNOTATION_RETRAIN)
        if token and tick.checkpoint.get(HANDLED_RETRAIN) != token:
            return f"requested by annotation {ANNOTATION_RETRAIN}={token}"
        return None

    def taken(self, tick: Tick) -> None:
        tick.checkpoint[HANDLED_RETRAIN] = tick.dm.metadata.annotations.get(ANNOTATION_RETRAIN)

    def ignored(self, tick: Tick) -> None:
        self.taken(tick)
        tick.events.append(
            Event(
                "Warning", "RetrainIgnored", "retrain requested but spec.onDrift.retrain is not set"
            )
        )
