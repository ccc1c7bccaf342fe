"""The DriftMonitor's retrain triggers, registered in the order they are tried.

A new trigger is one module here with a `RetrainTrigger` subclass and one
`register_trigger` line below, plus its name in `pilotage.api.driftmonitor.Trigger` and
whatever spec fields it reads (docs/extending.md walks through it).
"""

from pilotage.control.triggers.base import (
    TRIGGERS,
    RetrainTrigger,
    Tick,
    register_trigger,
    unregister_trigger,
)
from pilotage.control.triggers.datasetchange import DatasetChangeTrigger
from pilotage.control.triggers.drift import DriftTrigger
from pilotage.control.triggers.manual import ManualTrigger
from pilotage.control.triggers.performance import PerformanceTrigger
from pilotage.control.triggers.schedule import ScheduleTrigger

register_trigger(DriftTrigger())
register_trigger(PerformanceTrigger())
register_trigger(DatasetChangeTrigger())
register_trigger(ScheduleTrigger())
register_trigger(ManualTrigger())

__all__ = ["TRIGGERS", "RetrainTrigger", "Tick", "register_trigger", "unregister_trigger"]
