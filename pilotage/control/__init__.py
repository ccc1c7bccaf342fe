"""Pure, level-triggered reconcilers: (resource, observation, now) → Result.

No I/O, no clock reads, no globals. The shells (`pilotage.operator`, `pilotage.local`)
each implement `pilotage.control.platform.Platform`; on it, `Observer` builds the
observations (helpers in `pilotage.control.observe`), `reconcile` calls these functions
and `carry_out` carries out the returned actions in order. The vocabulary is in
`pilotage.control.types`.
"""

from pilotage.control.dataset import reconcile_dataset
from pilotage.control.driftmonitor import reconcile_driftmonitor
from pilotage.control.modeldeployment import reconcile_modeldeployment
from pilotage.control.observe import (
    drift_signal,
    feedback_of,
    strongest_drift_signal,
    training_job_info,
)
from pilotage.control.trainingjob import output_uri, reconcile_trainingjob
from pilotage.wire.router_stats import parse_router_stats as router_stats

__all__ = [
    "drift_signal",
    "feedback_of",
    "output_uri",
    "reconcile_dataset",
    "reconcile_driftmonitor",
    "reconcile_modeldeployment",
    "reconcile_trainingjob",
    "router_stats",
    "strongest_drift_signal",
    "training_job_info",
]
