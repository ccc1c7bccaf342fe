"""Which model version a ModelDeployment wants, from `spec.model` and the TrainingJobs seen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pilotage.api.modeldeployment import ModelRef, ModelSource
from pilotage.control.types import ModelDeploymentObservation, TrainingJobInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Wanted:
    """The version to serve (and roll out when it differs from the stable one)."""

    model: ModelRef


@dataclass(frozen=True)
class Unresolved:
    """No deployable version yet. `refused` means it will not become deployable by waiting
    (failed gates, failed training): the condition is Stalled rather than Reconciling."""

    reason: str
    message: str
    refused: bool = False


def _ref(job: TrainingJobInfo) -> ModelRef:
    assert job.model_version is not None and job.model_uri is not None
    return ModelRef(version=job.model_version, uri=job.model_uri, training_job=job.name)


def _deployable(job: TrainingJobInfo) -> bool:
    return (
        job.phase == "Succeeded"
        and job.gates_passed is True
        and bool(job.model_version)
        and bool(job.model_uri)
    )


def version_from_uri(uri: str) -> str:
    """The last path segment of a model directory URI (`<base>/<ns>/<name>/<version>`)."""
    tail = uri.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return tail[:63]


def resolve(source: ModelSource, obs: ModelDeploymentObservation) -> Wanted | Unresolved:
    if source.uri is not None:
        version = obs.model_card_version or version_from_uri(source.uri)
        return Wanted(ModelRef(version=version, uri=source.uri))

    if source.training_job_ref is not None:
        name = source.training_job_ref.name
        job = next((j for j in obs.training_jobs if j.name == name), None)
        if job is None:
            return Unresolved("TrainingJobNotFound", f"waiting for TrainingJob {name}")
        if job.phase == "Failed":
            return Unresolved("TrainingFailed", f"TrainingJob {name} failed", refused=True)
        if job.phase != "Succeeded":
            return Unresolved("WaitingForModel", f"TrainingJob {name} is {job.phase}")
        if job.gates_passed is not True:
            return Unresolved(
                "GatesFailed",
                f"TrainingJob {name} (version {job.model_version}) failed its gates; "
                "it is never deployed",
                refused=True,
            )
        if not _deployable(job):
            return Unresolved("WaitingForModel", f"TrainingJob {name} reported no model yet")
        return Wanted(_ref(job))

    selector = source.training_job_selector
    assert selector is not None
    matching = [j for j in obs.training_jobs if selector.matches(dict(j.labels))]
    deployable = [j for j in matching if _deployable(j)]
    if not deployable:
        detail = (
            f"{len(matching)} match but none has succeeded and passed its gates"
            if matching
            else "none matches"
        )
        return Unresolved("NoMatchingTrainingJob", f"no deployable TrainingJob: {detail}")
    newest = max(deployable, key=lambda j: (j.created or _EPOCH, j.name))
    return Wanted(_ref(newest))
