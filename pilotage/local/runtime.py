"""The embedded control loop: a thin shell around the pure reconcilers.

One tick: load the resources → build each one's observation (``control.platform``'s
``Observer`` over the local platform, which reads the store and the processes) → call
``reconcile_<kind>`` → carry out the actions → write the status and record the events
(one transaction). A resource is reconciled again when anything in the store changed,
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

from pilotage.api import KIND_ORDER, ModelDeployment, Resource
from pilotage.control.platform import (
    Observation,
    Observer,
    carry_out,
    namespace_of,
    reconcile,
)
from pilotage.control.types import DeleteRun
from pilotage.local.activations import Activations
from pilotage.local.platform import LocalPlatform, scoped, unscoped
from pilotage.local.store import Store


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
        self.observer = Observer(platform)
        self._last_error: dict[tuple[str, str, str], str] = {}
        self.stop_event = threading.Event()
        self._wakeup = threading.Event()
        self.activations = Activations(platform, self.wake, self.stop_event)
        self.ticks = 0
        """Ticks completed: a tick after a store change has reconciled every resource."""
        self.observers: list[Callable[[Resource, Any], None]] = []
        """Called with each resource and the observation built for its reconcile (the
        dashboard's charts read what the loop fetched anyway; an observer's failure is
        ignored: it must never stop the control loop)."""

    def observe(self, res: Resource, now: datetime | None = None) -> Observation:
        """What the resource's reconciler observes now (see `control.platform.Observer`)."""
        return self.observer.observe(res, now)

    # -- the loop ----------------------------------------------------------------------------

    def wake(self, namespace: str, name: str) -> None:
        """Reconcile this ModelDeployment now (a router holds requests for a variant at
        zero); safe from any thread."""
        self._due[("ModelDeployment", namespace, name)] = 0.0
        self._wakeup.set()

    def _sync_activations(self, resources: list[Resource]) -> None:
        """A long poll on the router of each deployment that may scale to zero."""
        self.activations.sync(
            {
                (namespace_of(r), r.name)
                for r in resources
                if isinstance(r, ModelDeployment)
                and r.spec.autoscaling is not None
                and r.spec.autoscaling.min_replicas == 0
            }
        )

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
                self.platform.delete_run(namespace, DeleteRun(run))
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
        present = {(r.kind, namespace_of(r), r.name) for r in resources}
        for gone in [k for k in list(self._due) if k not in present]:
            self._due.pop(gone, None)
        self._sync_activations(resources)
        self.ticks += 1
        return report

    def reconcile(self, res: Resource, now: datetime) -> float | None:
        observation = self.observe(res, now)
        for observer in self.observers:
            with contextlib.suppress(Exception):  # a view must not break the loop
                observer(res, observation)
        result = reconcile(res, observation, now)
        namespace = namespace_of(res)
        for action in result.actions:
            carry_out(self.platform, namespace, action)
        status = result.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.store.write_status(
            res.kind,
            res.name,
            status,
            namespace,
            [(event.type, event.reason, event.message) for event in result.events],
        )
        return result.requeue_after

    def run(
        self, interval: float = 0.25, on_tick: Callable[[TickReport], None] | None = None
    ) -> None:
        """Tick until ``stop_event`` is set."""
        try:
            while not self.stop_event.is_set():
                try:
                    report = self.tick()
                except Exception as exc:  # e.g. the store is locked longer than its timeout
                    report = TickReport(errors=[f"control loop: {type(exc).__name__}: {exc}"])
                if on_tick is not None:
                    on_tick(report)
                # the next tick comes after `interval`, sooner when a reconcile is due
                # sooner (a replica starting from zero) or a router woke the loop
                soonest = min(self._due.values(), default=time.monotonic() + interval)
                self._wakeup.wait(max(0.0, min(interval, soonest - time.monotonic())))
                self._wakeup.clear()
        finally:
            self.activations.close()
