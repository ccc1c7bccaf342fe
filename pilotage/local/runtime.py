"""The embedded control loop: a thin shell around the pure reconcilers.

One tick: load the resources → build each one's observation from the store and the
local platform → call ``reconcile_<kind>`` → carry out the actions → write the status →
record the events. A resource is reconciled again when anything in the store changed,
or when its reconciler's ``requeue_after`` (capped at ``max_requeue``, since process
states change without a store write) has passed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pilotage.api import Dataset, DriftMonitor, ModelDeployment, Resource, TrainingJob
from pilotage.api.modelcard import CARD_FILE, ModelCard
from pilotage.control import (
    reconcile_dataset,
    reconcile_driftmonitor,
    reconcile_modeldeployment,
    reconcile_trainingjob,
)
from pilotage.control.common import LABEL_MONITOR
from pilotage.control.observe import (
    drift_signal,
    feedback_of,
    strongest_drift_signal,
    training_job_info,
)
from pilotage.control.types import (
    DatasetObservation,
    DriftMonitorObservation,
    DriftSignal,
    ModelDeploymentObservation,
    Result,
    TrainingJobInfo,
    TrainingJobObservation,
)
from pilotage.local.platform import LocalPlatform, scoped, unscoped
from pilotage.local.store import Store
from pilotage.storage import StorageError, join, read_bytes

KIND_ORDER = ("Dataset", "TrainingJob", "ModelDeployment", "DriftMonitor")

RECONCILERS: dict[str, Callable[[Any, Any, datetime], Result[Any]]] = {
    "Dataset": reconcile_dataset,
    "TrainingJob": reconcile_trainingjob,
    "ModelDeployment": reconcile_modeldeployment,
    "DriftMonitor": reconcile_driftmonitor,
}


def _owner(res: Resource) -> tuple[str | None, str | None]:
    refs = getattr(res.metadata, "ownerReferences", None) or []
    for ref in refs:
        if isinstance(ref, dict) and ref.get("controller", True):
            return ref.get("kind"), ref.get("name")
    return None, None


def job_info(tj: TrainingJob) -> TrainingJobInfo:
    return training_job_info(tj, *_owner(tj))


@dataclass
class TickReport:
    reconciled: int = 0
    errors: list[str] = field(default_factory=list)


class Runtime:
    """The control loop over one store and one local platform."""

    def __init__(self, store: Store, platform: LocalPlatform, max_requeue: float = 1.0) -> None:
        self.store = store
        self.platform = platform
        self.max_requeue = max_requeue
        self._due: dict[tuple[str, str, str], float] = {}
        self._seen_version = -1
        self._cards: dict[str, ModelCard | None] = {}
        self._last_error: dict[tuple[str, str, str], str] = {}
        self.stop_event = threading.Event()
        self.ticks = 0
        """Ticks completed: a tick after a store change has reconciled every resource."""
        self.observers: list[Callable[[Resource, Any], None]] = []
        """Called with each resource and the observation built for its reconcile (the
        dashboard's charts read what the loop fetched anyway; an observer's failure is
        ignored: it must never stop the control loop)."""

    # -- observations ------------------------------------------------------------------

    def model_card(self, uri: str) -> ModelCard | None:
        """The model.json at a model directory URI (cached: a version's card never changes)."""
        if uri not in self._cards:
            try:
                self._cards[uri] = ModelCard.model_validate_json(read_bytes(join(uri, CARD_FILE)))
            except (StorageError, ValueError):
                return None
        return self._cards[uri]

    def _jobs(self, namespace: str) -> tuple[TrainingJobInfo, ...]:
        jobs = self.store.objects("TrainingJob", namespace)
        return tuple(job_info(tj) for tj in jobs if isinstance(tj, TrainingJob))

    def _drift_signal(self, md: ModelDeployment, namespace: str) -> DriftSignal | None:
        monitors = [
            dm
            for dm in self.store.objects("DriftMonitor", namespace)
            if isinstance(dm, DriftMonitor) and dm.spec.deployment_ref.name == md.name
        ]
        return strongest_drift_signal(map(drift_signal, monitors))

    def observe(self, res: Resource) -> Any:
        namespace = res.metadata.namespace or "default"
        if isinstance(res, Dataset):
            run = res.status.run if res.status else None
            return DatasetObservation(
                run=self.platform.run_state(run, namespace) if run else None,
                artifact_uri=self.platform.artifact_uri,
            )
        if isinstance(res, TrainingJob):
            run = res.status.run if res.status else None
            dataset = self.store.find("Dataset", res.spec.dataset_ref.name, namespace)
            return TrainingJobObservation(
                dataset=dataset if isinstance(dataset, Dataset) else None,
                run=self.platform.run_state(run, namespace) if run else None,
                artifact_uri=self.platform.artifact_uri,
            )
        if isinstance(res, ModelDeployment):
            card_version = None
            if res.spec.model.uri:
                card = self.model_card(res.spec.model.uri)
                card_version = card.version if card else None
            return ModelDeploymentObservation(
                training_jobs=self._jobs(namespace),
                servers=tuple(self.platform.server_states(res.name, namespace)),
                router=self.platform.router_state(res.name, namespace),
                drift=self._drift_signal(res, namespace),
                model_card_version=card_version,
            )
        if isinstance(res, DriftMonitor):
            return self._observe_monitor(res, namespace)
        raise TypeError(f"no observation for {res.kind}")

    def _observe_monitor(self, dm: DriftMonitor, namespace: str) -> DriftMonitorObservation:
        md = self.store.find("ModelDeployment", dm.spec.deployment_ref.name, namespace)
        deployment = md if isinstance(md, ModelDeployment) else None
        stable = deployment.status.stable if deployment and deployment.status else None
        card = self.model_card(stable.uri) if stable else None
        router = self.platform.router_state(deployment.name, namespace) if deployment else None
        retrain = dm.spec.on_drift.retrain
        fingerprint = None
        if retrain is not None:
            ds = self.store.find("Dataset", retrain.template.spec.dataset_ref.name, namespace)
            if isinstance(ds, Dataset) and ds.status:
                fingerprint = ds.status.fingerprint
        mine = tuple(
            info for info in self._jobs(namespace) if info.labels.get(LABEL_MONITOR) == dm.name
        )
        return DriftMonitorObservation(
            deployment=deployment,
            version=stable.version if stable else None,
            baseline=card.baseline if card else None,
            counters=tuple(
                self.platform.server_drift_counters(deployment.name, stable.version, namespace)
                if deployment and stable
                else ()
            ),
            feedback=feedback_of(router.stats, stable.version)
            if router and router.stats and stable
            else None,
            dataset_fingerprint=fingerprint,
            retrain_jobs=mine,
        )

    # -- the loop ----------------------------------------------------------------------------

    def collect_garbage(self, resources: list[Resource]) -> None:
        """Stop the processes whose owner resource was deleted (owners are ``Kind/scoped``)."""
        present = {
            f"{r.kind}/{scoped(r.metadata.namespace or 'default', r.name)}" for r in resources
        }
        for record in self.platform.supervisor.records():
            if record.owner in present:
                continue
            if record.role == "run":
                namespace, run = unscoped(record.key.split("/", 1)[1])
                self.platform.delete_run(run, namespace)
            else:
                namespace, deployment = unscoped(record.owner.split("/", 1)[1])
                self.platform.remove_deployment(deployment, namespace)

    def tick(self, now: datetime | None = None) -> TickReport:
        report = TickReport()
        resources = self.store.objects()
        self.collect_garbage(resources)
        version = self.store.resource_version()
        changed = version != self._seen_version
        self._seen_version = version
        clock = time.monotonic()
        for res in sorted(resources, key=lambda r: KIND_ORDER.index(r.kind)):
            key = (res.kind, res.metadata.namespace or "default", res.name)
            if not changed and self._due.get(key, 0.0) > clock:
                continue
            try:
                requeue = self.reconcile(res, now or datetime.now(UTC))
                self._last_error.pop(key, None)
            except Exception as exc:  # one broken resource must not stop the others
                message = f"{type(exc).__name__}: {exc}"
                report.errors.append(f"{res.kind}/{res.name}: {message}")
                if self._last_error.get(key) != message:
                    self._last_error[key] = message
                    self.store.record_event(
                        res.kind, res.name, "Warning", "ReconcileError", message[:1000], key[1]
                    )
                requeue = self.max_requeue
            report.reconciled += 1
            self._due[key] = clock + min(requeue or self.max_requeue, self.max_requeue)
        self._seen_version = self.store.resource_version()
        self.ticks += 1
        return report

    def reconcile(self, res: Resource, now: datetime) -> float | None:
        observation = self.observe(res)
        for observer in self.observers:
            with contextlib.suppress(Exception):  # a view must not break the loop
                observer(res, observation)
        result = RECONCILERS[res.kind](res, observation, now)
        namespace = res.metadata.namespace or "default"
        for action in result.actions:
            self.platform.carry_out(action, namespace)
        status = result.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.store.write_status(res.kind, res.name, status, namespace)
        for event in result.events:
            self.store.record_event(
                res.kind, res.name, event.type, event.reason, event.message, namespace
            )
        return result.requeue_after

    def run(
        self, interval: float = 0.25, on_tick: Callable[[TickReport], None] | None = None
    ) -> None:
        """Tick until ``stop_event`` is set."""
        while not self.stop_event.is_set():
            try:
                report = self.tick()
            except Exception as exc:  # e.g. the store is locked for longer than its timeout
                report = TickReport(errors=[f"control loop: {type(exc).__name__}: {exc}"])
            if on_tick is not None:
                on_tick(report)
            self.stop_event.wait(interval)
