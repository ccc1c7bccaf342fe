"""Plain-data builders for the reconciler tests: resources, observations, router counters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pilotage.api.dataset import Dataset
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.api.trainingjob import TrainingJob
from pilotage.control import reconcile_modeldeployment
from pilotage.control.types import (
    DriftSignal,
    ModelDeploymentObservation,
    Result,
    RouterState,
    RouterStats,
    ServerState,
    SetRoutes,
    ShadowStats,
    TrainingJobInfo,
    VariantStats,
)
from pilotage.router.stats import LATENCY_BOUNDS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ARTIFACTS = "file:///var/artifacts"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def dataset(
    *,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> Dataset:
    doc: dict[str, Any] = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris", "generation": generation, "annotations": annotations or {}},
        "spec": {"source": {"uri": "builtin://iris"}, **spec},
    }
    if status is not None:
        doc["status"] = status
    return Dataset.model_validate(doc)


def ready_dataset() -> Dataset:
    return dataset(
        status={"phase": "Ready", "observedGeneration": 1, "fingerprint": "f" * 64, "rows": 150}
    )


def trainingjob(
    *,
    name: str = "iris-v1",
    generation: int = 1,
    status: dict[str, Any] | None = None,
    namespace: str | None = None,
    **spec: Any,
) -> TrainingJob:
    meta: dict[str, Any] = {"name": name, "generation": generation}
    if namespace:
        meta["namespace"] = namespace
    doc: dict[str, Any] = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": meta,
        "spec": {
            "datasetRef": {"name": "iris"},
            "model": {"algorithm": "logistic_regression"},
            **spec,
        },
    }
    if status is not None:
        doc["status"] = status
    return TrainingJob.model_validate(doc)


def deployment(
    *,
    strategy: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    generation: int = 1,
    **spec: Any,
) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "iris",
                "generation": generation,
                "annotations": annotations or {},
            },
            "spec": {
                "model": model or {"trainingJobSelector": {"matchLabels": {"app": "iris"}}},
                "strategy": strategy or {"type": "Canary"},
                "analysis": analysis or {"interval": "10s", "minRequests": 10},
                **spec,
            },
        }
    )


def job(
    version: str,
    created: float = 0,
    *,
    phase: str = "Succeeded",
    gates: bool | None = True,
    labels: dict[str, str] | None = None,
) -> TrainingJobInfo:
    return TrainingJobInfo(
        name=f"iris-{version}",
        labels=labels if labels is not None else {"app": "iris"},
        created=at(created),
        phase=phase,
        model_version=version if phase == "Succeeded" else None,
        model_uri=f"{ARTIFACTS}/default/iris-{version}/{version}" if phase == "Succeeded" else None,
        gates_passed=gates if phase == "Succeeded" else None,
    )


def variant(
    name: str, version: str, requests: int = 0, errors: int = 0, seconds: float = 0.002
) -> VariantStats:
    """Counters of `requests` requests that all took `seconds`."""
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    index = next((i for i, b in enumerate(LATENCY_BOUNDS) if seconds <= b), len(LATENCY_BOUNDS))
    counts[index] = requests
    return VariantStats(name, version, requests, errors, LATENCY_BOUNDS, tuple(counts))


def add(a: VariantStats, b: VariantStats) -> VariantStats:
    return replace(
        a,
        requests=a.requests + b.requests,
        errors=a.errors + b.errors,
        latency_counts=tuple(
            x + y for x, y in zip(a.latency_counts, b.latency_counts, strict=True)
        ),
    )


def observe(
    jobs: Iterable[TrainingJobInfo],
    ready: Iterable[str],
    stats: RouterStats | None = None,
    drift: DriftSignal | None = None,
    router_ready: bool = True,
) -> ModelDeploymentObservation:
    return ModelDeploymentObservation(
        training_jobs=tuple(jobs),
        servers=tuple(ServerState(v, True) for v in ready),
        router=RouterState(router_ready, "http://127.0.0.1:9000", stats or RouterStats()),
        drift=drift,
    )


def stats_of(*variants: VariantStats, shadow: ShadowStats | None = None) -> RouterStats:
    return RouterStats(variants=tuple(variants), shadow=shadow or ShadowStats())


def apply(md: ModelDeployment, result: Result[Any]) -> ModelDeployment:
    """The deployment as it is after the shell wrote the returned status."""
    return md.model_copy(update={"status": result.status})


def run(
    md: ModelDeployment, obs: ModelDeploymentObservation, seconds: float
) -> tuple[ModelDeployment, Result[Any]]:
    result = reconcile_modeldeployment(md, obs, at(seconds))
    return apply(md, result), result


def routes(result: Result[Any]) -> SetRoutes | None:
    return next((a for a in result.actions if isinstance(a, SetRoutes)), None)


def with_annotations(md: ModelDeployment, **annotations: str) -> ModelDeployment:
    meta = md.metadata.model_copy(
        update={"annotations": {f"pilotage.dev/{k}": v for k, v in annotations.items()}}
    )
    return md.model_copy(update={"metadata": meta})
