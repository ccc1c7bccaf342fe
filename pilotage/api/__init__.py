"""The four Pilotage resources (pydantic models): the single source of truth of the API.

The names below are loaded on first use (PEP 562): a process that needs only one
submodule, such as a model server reading its ``pilotage.api.modelcard``, does not
build the four resources' pydantic models at start-up (0.2 s of a cold start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names for type checkers; at run time __getattr__ loads them
    from pilotage.api.common import (
        API_VERSION,
        GROUP,
        VERSION,
        Condition,
        ObjectMeta,
        parse_duration,
    )
    from pilotage.api.dataset import (
        Dataset,
        DatasetSpec,
        DatasetStatus,
    )
    from pilotage.api.driftmonitor import (
        DriftMonitor,
        DriftMonitorSpec,
        DriftMonitorStatus,
    )
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
    from pilotage.api.resource import (
        Resource,
    )
    from pilotage.api.trainingjob import (
        TrainingJob,
        TrainingJobSpec,
        TrainingJobStatus,
    )

_HOMES = {
    "pilotage.api.common": (
        "API_VERSION",
        "GROUP",
        "VERSION",
        "Condition",
        "ObjectMeta",
        "parse_duration",
    ),
    "pilotage.api.dataset": ("Dataset", "DatasetSpec", "DatasetStatus"),
    "pilotage.api.driftmonitor": ("DriftMonitor", "DriftMonitorSpec", "DriftMonitorStatus"),
    "pilotage.api.manifests": (
        "KIND_ORDER",
        "KINDS",
        "ManifestError",
        "load_resources",
        "parse_resource",
    ),
    "pilotage.api.modeldeployment": (
        "ModelDeployment",
        "ModelDeploymentSpec",
        "ModelDeploymentStatus",
    ),
    "pilotage.api.resource": ("Resource",),
    "pilotage.api.trainingjob": ("TrainingJob", "TrainingJobSpec", "TrainingJobStatus"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [  # a literal list: type checkers and linters read the re-exports from it
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
assert sorted(__all__) == sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
