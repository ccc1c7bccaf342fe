"""The four Pilotage resources (pydantic models): the single source of truth of the API."""

from pilotage.api.common import API_VERSION, GROUP, VERSION, Condition, ObjectMeta, parse_duration
from pilotage.api.dataset import Dataset, DatasetSpec, DatasetStatus
from pilotage.api.driftmonitor import DriftMonitor, DriftMonitorSpec, DriftMonitorStatus
from pilotage.api.manifests import (
    KIND_ORDER,
    KINDS,
    ManifestError,
    load_resources,
    parse_resource,
)
from pilotage.api.modeldeployment import (
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from pilotage.api.resource import Resource
from pilotage.api.trainingjob import TrainingJob, TrainingJobSpec, TrainingJobStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "KIND_ORDER",
    "VERSION",
    "Condition",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "DriftMonitor",
    "DriftMonitorSpec",
    "DriftMonitorStatus",
    "ManifestError",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ObjectMeta",
    "Resource",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "load_resources",
    "parse_duration",
    "parse_resource",
]
