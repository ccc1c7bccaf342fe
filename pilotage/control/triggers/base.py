"""What a DriftMonitor retrain trigger is, and the registry of them.

A trigger looks at one reconcile call of a DriftMonitor (a `Tick`) and says whether it
wants a retrain now and why. The reconciler tries the registered triggers in order: the
first that fires names the TrainingJob it creates (label `pilotage.dev/trigger`,
`status.lastRetrain.trigger`), the others that fired with it are noted in its message,
and every one of them is told it was taken. The cooldown is the monitor's, whatever fired.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Protocol

from pilotage.api.driftmonitor import DriftMonitor, DriftMonitorSpec, DriftMonitorStatus
from pilotage.control.types import DriftMonitorObservation, Event


class Tick(Protocol):
    """One reconcile call of a DriftMonitor, as a trigger sees it."""

    dm: DriftMonitor
    spec: DriftMonitorSpec
    obs: DriftMonitorObservation
    now: datetime
    stamp: str
    """`now` as written in the status."""
    st: DriftMonitorStatus
    """The new status (a copy of the old one the call edits)."""
    checkpoint: dict[str, Any]
    """`status.checkpoint`: internal state kept between calls."""
    events: list[Event]

    def wait(self, seconds: float) -> None:
        """Look again in at most this many seconds."""

    def drifted_text(self) -> str:
        """The drifted features of the latest check, as text."""


class RetrainTrigger:
    """One reason to retrain. Subclasses set `name` and override `fired`; the other
    hooks do nothing by default."""

    name: ClassVar[str]
    """The trigger's value in `status.lastRetrain.trigger` and the `pilotage.dev/trigger`
    label; it must be one of `pilotage.api.driftmonitor.Trigger`."""
    per_version: ClassVar[tuple[str, ...]] = ()
    """Checkpoint keys about the watched model version: dropped when it changes."""

    def problem(self, spec: DriftMonitorSpec) -> str | None:
        """What makes the trigger's part of the spec unusable, naming the field."""
        return None

    def fired(self, tick: Tick) -> str | None:
        """Why a retrain is wanted now, or None. Called once per call (after the drift
        check), in registry order; it may keep what it needs in the checkpoint/status."""
        raise NotImplementedError

    def taken(self, tick: Tick) -> None:
        """A retrain was created while this trigger had fired."""

    def ignored(self, tick: Tick) -> None:
        """It fired but `spec.onDrift.retrain` is not set: there is nothing to retrain with."""


TRIGGERS: list[RetrainTrigger] = []
"""The registered triggers, tried in this order (most specific first)."""


def register_trigger(trigger: RetrainTrigger) -> RetrainTrigger:
    """Add a trigger after those registered so far; its name must be new."""
    if any(t.name == trigger.name for t in TRIGGERS):
        raise ValueError(f"a retrain trigger named {trigger.name!r} is already registered")
    TRIGGERS.append(trigger)
    return trigger


def unregister_trigger(name: str) -> None:
    """Remove the trigger registered under `name` (tests, plugins that are unloaded)."""
    TRIGGERS[:] = [t for t in TRIGGERS if t.name != name]
