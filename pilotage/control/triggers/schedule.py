"""Trigger `schedule`: the cron expression `spec.schedule` came due.

The schedule counts from the monitor's first look (`status.lastScheduleTime`); once due
it stays due until a retrain takes it, so a cooldown only delays it."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter

from pilotage.api.driftmonitor import DriftMonitorSpec
from pilotage.control.common import parse_time, seconds_between
from pilotage.control.triggers.base import RetrainTrigger, Tick


class ScheduleTrigger(RetrainTrigger):
    name = "schedule"

    def problem(self, spec: DriftMonitorSpec) -> str | None:
        if spec.schedule is None:
            return None
        if not croniter.is_valid(spec.schedule):
            return f"spec.schedule: {spec.schedule!r} is not a cron expression"
        if spec.on_drift.retrain is None:
            return "spec.onDrift.retrain: a schedule needs a TrainingJob template to retrain with"
        return None

    def fired(self, tick: Tick) -> str | None:
        schedule, st = tick.spec.schedule, tick.st
        if schedule is None:
            return None
        last = parse_time(st.last_schedule_time)
        if last is None:
            st.last_schedule_time = tick.stamp  # the schedule counts from the first look
            last = tick.now
        following: datetime = croniter(schedule, last).get_next(datetime)
        if following <= tick.now:
            return f"schedule {schedule!r}"
        tick.wait(seconds_between(tick.now, following))
        return None

    def taken(self, tick: Tick) -> None:
        tick.st.last_schedule_time = tick.stamp
