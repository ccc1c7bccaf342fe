"""Pure helpers the shells use to build observations from what they read.

They turn resources and a model server's `/v1/models/{name}/drift` document into the
records of `pilotage.control.types`, so the operator and the local runtime build them the
same way. The router's `/admin/stats` document is parsed by `pilotage.wire.router_stats`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pilotage.api.driftmonitor import DriftMonitor
from pilotage.api.trainingjob import TrainingJob
from pilotage.control.common import parse_time
from pilotage.control.types import (
    DriftSignal,
    FeedbackStats,
    RecentRows,
    RouterStats,
    ServerCounters,
    TrainingJobInfo,
)
from pilotage.wire.drift_counts import DriftCounts

DRIFTING_SINCE = "driftingSince"


def training_job_info(
    tj: TrainingJob, owner_kind: str | None = None, owner_name: str | None = None
) -> TrainingJobInfo:
    status = tj.status
    if status is not None and status.observed_generation != tj.generation:
        status = None  # it describes an older generation's spec, which no longer exists
    return TrainingJobInfo(
        name=tj.name,
        labels=dict(tj.metadata.labels),
        created=parse_time(tj.metadata.creation_timestamp),
        phase=status.phase if status is not None else "Pending",
        model_version=status.model_version if status is not None else None,
        model_uri=status.model_uri if status is not None else None,
        gates_passed=status.gates.passed if status is not None and status.gates else None,
        dataset_fingerprint=status.dataset_fingerprint if status is not None else None,
        owner_kind=owner_kind,
        owner_name=owner_name,
    )


def drift_signal(monitor: DriftMonitor) -> DriftSignal | None:
    """What a DriftMonitor tells the ModelDeployment it watches (None before any check)."""
    status = monitor.status
    if status is None or status.last_check_time is None:
        return None
    drifting = status.phase == "Drifting" and (
        status.consecutive_drifting >= monitor.spec.consecutive
    )
    since = parse_time((status.checkpoint or {}).get(DRIFTING_SINCE))
    return DriftSignal(
        monitor=monitor.name,
        score=status.drift_score,
        drifting=drifting,
        rollback=drifting and monitor.spec.on_drift.rollback,
        since=since,
        message=status.message,
        version=status.version,
    )


def strongest_drift_signal(signals: Iterable[DriftSignal | None]) -> DriftSignal | None:
    """The signal that speaks for a deployment several DriftMonitors watch: the most
    alarming one (a rollback, then drifting, then the highest score; the monitor name
    breaks ties so the choice does not depend on listing order). None when there is none."""
    present = [s for s in signals if s is not None]
    return min(
        present,
        key=lambda s: (not s.rollback, not s.drifting, -(s.score or 0.0), s.monitor),
        default=None,
    )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def feedback_of(stats: RouterStats, version: str) -> FeedbackStats | None:
    """Live feedback counters of the variant serving `version` (a DriftMonitor input)."""
    found = [v.feedback for v in stats.variants if v.version == version]
    if not found:
        return None
    return FeedbackStats(
        labelled=sum(f.labelled for f in found),
        correct=sum(f.correct for f in found),
        valued=sum(f.valued for f in found),
        abs_error_sum=sum(f.abs_error_sum for f in found),
    )


def server_counters(doc: Mapping[str, Any], replica: str) -> ServerCounters:
    """A model server's `GET /v1/models/{name}/drift` document (`pilotage.wire.drift_counts`)
    as `ServerCounters`: cumulative bin and prediction counts, and its reservoir of recent
    rows (malformed entries are dropped). `replica` names the process (pod name and uid, or
    key and pid)."""
    counts = DriftCounts.parse(doc)
    reservoir = counts.reservoir
    return ServerCounters(
        features=counts.features,
        predictions=counts.predictions,
        rows=counts.rows,
        replica=replica,
        reservoir=(
            RecentRows(columns=reservoir.columns, rows=tuple(map(tuple, reservoir.rows)))
            if reservoir is not None
            else None
        ),
        out_of_schema=counts.out_of_schema,
    )
