"""The one interface both shells implement, and what the core builds on top of it.

`Platform` is what a reconcile reads from the world and does to it: the Kubernetes
platform (`pilotage.operator.platform`) and the local one (`pilotage.local.platform`)
implement it, and the reconcilers' tests drive the loop through an in-memory one
(`tests/control/fake_platform.py`), the way httpx tests through a mock transport.

On top of it, once for every shell: `Observer` assembles each kind's observation (and
caches model cards: a version's card never changes), `reconcile` calls the kind's pure
reconciler, and `carry_out` hands each action to the platform's method for it. A shell
keeps only what is its own: where resources are read from and statuses and events
written to, and what a failed action means.

Nothing here does I/O itself; the platform's methods do, in the shells.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pilotage import sources
from pilotage.api.dataset import Dataset
from pilotage.api.driftmonitor import DriftMonitor
from pilotage.api.modelcard import ModelCard
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.api.resource import Resource
from pilotage.api.trainingjob import TrainingJob
from pilotage.control.autoscale import LoadHistory, Policy
from pilotage.control.common import LABEL_MONITOR
from pilotage.control.dataset import reconcile_dataset
from pilotage.control.driftmonitor import reconcile_driftmonitor
from pilotage.control.modeldeployment import reconcile_modeldeployment
from pilotage.control.observe import drift_signal, feedback_of, strongest_drift_signal
from pilotage.control.trainingjob import reconcile_trainingjob
from pilotage.control.types import (
    Action,
    CreateTrainingJob,
    DatasetObservation,
    DeleteRun,
    DriftMonitorObservation,
    DriftSignal,
    EnsureRouter,
    EnsureServer,
    ModelDeploymentObservation,
    RemoveServer,
    Result,
    RouterState,
    RunState,
    ServerCounters,
    ServerState,
    SetRoutes,
    StartRun,
    TrainingJobInfo,
    TrainingJobObservation,
)

DEFAULT_NAMESPACE = "default"

Owner = TypeVar("Owner", contravariant=True)
"""How a shell names the resource an action is for: the operator passes the resource's
body (owner references come from it), the embedded runtime its namespace."""

OwnerT = TypeVar("OwnerT")

Observation = (
    DatasetObservation
    | TrainingJobObservation
    | ModelDeploymentObservation
    | DriftMonitorObservation
)


class Platform(Protocol[Owner]):
    """What the shells read and do for the reconcilers. Reads name things by namespace
    first, as Kubernetes does; each action method is idempotent, like the action."""

    # ---- observations ------------------------------------------------------------------

    @property
    def artifact_uri(self) -> str:
        """The default artifact store base URI (profiles and models go under it)."""
        ...

    def run_state(self, namespace: str, name: str) -> RunState | None:
        """The trainer run of this name (None when there is none)."""
        ...

    def dataset(self, namespace: str, name: str) -> Dataset | None: ...

    def deployment(self, namespace: str, name: str) -> ModelDeployment | None: ...

    def training_jobs(
        self, namespace: str, labels: Mapping[str, str] | None = None
    ) -> tuple[TrainingJobInfo, ...]:
        """The namespace's TrainingJobs, only those carrying every one of `labels` when given."""
        ...

    def drift_monitors(self, namespace: str) -> tuple[DriftMonitor, ...]: ...

    def servers(self, namespace: str, deployment: str) -> tuple[ServerState, ...]:
        """One state per version of the deployment that has servers."""
        ...

    def router(self, namespace: str, deployment: str) -> RouterState | None:
        """The deployment's router (None when it has none)."""
        ...

    def server_counters(
        self, namespace: str, deployment: str, version: str
    ) -> tuple[ServerCounters, ...]:
        """Drift counters of every ready server replica of (deployment, version)."""
        ...

    def read_model_card(
        self, uri: str, served_by: tuple[str, str, str] | None = None
    ) -> ModelCard | None:
        """The model.json of a model directory, uncached (None when it cannot be read).
        `served_by` (namespace, deployment, version) names servers that loaded it, for a
        shell that cannot read the artifact store itself."""
        ...

    # ---- actions -----------------------------------------------------------------------

    def start_run(self, owner: Owner, action: StartRun) -> None: ...

    def delete_run(self, owner: Owner, action: DeleteRun) -> None: ...

    def ensure_server(self, owner: Owner, action: EnsureServer) -> None: ...

    def remove_server(self, owner: Owner, action: RemoveServer) -> None: ...

    def ensure_router(self, owner: Owner, action: EnsureRouter) -> None: ...

    def set_routes(self, owner: Owner, action: SetRoutes) -> None: ...

    def create_training_job(self, owner: Owner, action: CreateTrainingJob) -> None: ...


def method_of(action: type[Action] | Action) -> str:
    """The `Platform` method that carries out an action: its type's name in snake case
    (`EnsureServer` → `ensure_server`)."""
    name = action.__name__ if isinstance(action, type) else type(action).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).removeprefix("_")


def carry_out(platform: Platform[OwnerT], owner: OwnerT, action: Action) -> None:
    """Carry out one action of the resource `owner` names."""
    getattr(platform, method_of(action))(owner, action)


RECONCILERS: dict[str, Callable[[Any, Any, datetime], Result[Any]]] = {
    "Dataset": reconcile_dataset,
    "TrainingJob": reconcile_trainingjob,
    "ModelDeployment": reconcile_modeldeployment,
    "DriftMonitor": reconcile_driftmonitor,
}


def reconcile(resource: Resource, observation: Observation, now: datetime) -> Result[Any]:
    """The kind's pure reconciler on (resource, observation, now)."""
    return RECONCILERS[resource.kind](resource, observation, now)


def namespace_of(resource: Resource) -> str:
    return resource.metadata.namespace or DEFAULT_NAMESPACE


class Observer:
    """Builds what each reconciler observes from one platform, the same for every shell."""

    def __init__(self, platform: Platform[Any]) -> None:
        self.platform = platform
        self._cards: dict[str, ModelCard] = {}
        self.loads = LoadHistory()
        """Router load samples per deployment, for `spec.autoscaling`."""

    def model_card(
        self, uri: str, served_by: tuple[str, str, str] | None = None
    ) -> ModelCard | None:
        """The card of a model directory; cached once read (a version's card never changes)."""
        if uri not in self._cards:
            card = self.platform.read_model_card(uri, served_by)
            if card is None:
                return None
            self._cards[uri] = card
        return self._cards[uri]

    def drift(self, namespace: str, deployment: str) -> DriftSignal | None:
        """What the DriftMonitors watching the deployment tell it (the most alarming)."""
        monitors = self.platform.drift_monitors(namespace)
        return strongest_drift_signal(
            drift_signal(m) for m in monitors if m.spec.deployment_ref.name == deployment
        )

    def observe(self, resource: Resource, now: datetime | None = None) -> Observation:
        """What the resource's reconciler observes. `now` (the shell's clock) stamps the
        router's load sample of an autoscaled ModelDeployment; without it none is taken."""
        namespace = namespace_of(resource)
        if isinstance(resource, Dataset):
            return DatasetObservation(
                run=self._run(namespace, resource.status.run if resource.status else None),
                artifact_uri=self.platform.artifact_uri,
                refresh=self._snapshot_request(resource, namespace),
                deployment=self._deployment_read(resource, namespace),
            )
        if isinstance(resource, TrainingJob):
            return TrainingJobObservation(
                dataset=self.platform.dataset(namespace, resource.spec.dataset_ref.name),
                run=self._run(namespace, resource.status.run if resource.status else None),
                artifact_uri=self.platform.artifact_uri,
            )
        if isinstance(resource, ModelDeployment):
            return self._deployment(resource, namespace, now)
        if isinstance(resource, DriftMonitor):
            return self._monitor(resource, namespace)
        raise TypeError(f"no observation for {resource.kind}")

    def _run(self, namespace: str, name: str | None) -> RunState | None:
        return self.platform.run_state(namespace, name) if name else None

    def _deployment(
        self, md: ModelDeployment, namespace: str, now: datetime | None
    ) -> ModelDeploymentObservation:
        uri = md.spec.model.uri
        card = self.model_card(uri) if uri else None
        router = self.platform.router(namespace, md.name)
        key = (namespace, md.name)
        policy = Policy.from_spec(md.spec)
        if policy is None:
            self.loads.forget(key)
        elif now is not None and router is not None and router.stats is not None:
            keep = max(policy.window, policy.scale_to_zero_after) + 2 * policy.interval
            self.loads.add(key, router.stats, now, keep)
        return ModelDeploymentObservation(
            training_jobs=self.platform.training_jobs(namespace),
            servers=self.platform.servers(namespace, md.name),
            router=router,
            drift=self.drift(namespace, md.name),
            model_card_version=card.version if card is not None else None,
            load=self.loads.samples(key) if policy is not None else {},
        )

    def _deployment_read(self, ds: Dataset, namespace: str) -> ModelDeployment | None:
        """The ModelDeployment whose spec the Dataset's source depends on (the sink of
        `logs://NAME` without one); read at every reconcile, so a Dataset waiting for it
        sees it appear or change at its next requeue."""
        name = sources.deployment_read(ds.spec.source)
        return self.platform.deployment(namespace, name) if name else None

    def _snapshot_request(self, ds: Dataset, namespace: str) -> str | None:
        """The newest fresh snapshot a DriftMonitor retraining on ``ds`` asked for."""
        if not sources.snapshots(ds.spec.source):
            return None  # only a Dataset read as a snapshot is refreshed for a retrain
        asked = [
            m.status.snapshot_request
            for m in self.platform.drift_monitors(namespace)
            if m.status is not None
            and m.status.snapshot_request
            and m.spec.on_drift.retrain is not None
            and m.spec.on_drift.retrain.template.spec.dataset_ref.name == ds.name
        ]
        return max(asked) if asked else None

    def _monitor(self, dm: DriftMonitor, namespace: str) -> DriftMonitorObservation:
        target = dm.spec.deployment_ref.name
        md = self.platform.deployment(namespace, target)
        stable = md.status.stable if md is not None and md.status is not None else None
        card = (
            self.model_card(stable.uri, (namespace, target, stable.version))
            if stable is not None
            else None
        )
        router = self.platform.router(namespace, target) if stable is not None else None
        retrain = dm.spec.on_drift.retrain
        dataset = (
            self.platform.dataset(namespace, retrain.template.spec.dataset_ref.name)
            if retrain is not None
            else None
        )
        counters = (
            self.platform.server_counters(namespace, target, stable.version)
            if stable is not None
            else ()
        )
        return DriftMonitorObservation(
            deployment=md,
            version=stable.version if stable is not None else None,
            baseline=card.baseline if card is not None else None,
            counters=counters,
            feedback=(
                feedback_of(router.stats, stable.version)
                if stable is not None and router is not None and router.stats is not None
                else None
            ),
            dataset_fingerprint=(
                dataset.status.fingerprint if dataset is not None and dataset.status else None
            ),
            stable_fingerprint=_trained_on(card),
            **_dataset_facts(dataset),
            retrain_jobs=self.platform.training_jobs(namespace, {LABEL_MONITOR: dm.name}),
        )


def _trained_on(card: ModelCard | None) -> str | None:
    """The fingerprint of the data a model card says its model learned from."""
    dataset = getattr(card, "dataset", None)  # a card built for a test may lack it
    return getattr(dataset, "fingerprint", None)


def _dataset_facts(dataset: Dataset | None) -> dict[str, Any]:
    """What a DriftMonitor needs of its template's Dataset to refresh its snapshot first."""
    if dataset is None or not sources.snapshots(dataset.spec.source):
        return {}
    st = dataset.status
    if st is None:
        return {"dataset_snapshots": True}
    done = st.phase in ("Ready", "Failed") and st.observed_generation == dataset.generation
    return {
        "dataset_snapshots": True,
        "dataset_snapshot": st.snapshot,
        "dataset_answered": st.refresh_request if done else None,
        "dataset_failed": (
            next((c.message for c in st.conditions if c.type == "Ready"), "failed")
            if st.phase == "Failed"
            else None
        ),
    }
