"""kopf wiring: create/update/resume handlers and a per-resource timer.

Every handler reconciles through `Reconciler.reconcile` (in a worker thread: the
kubernetes client is synchronous) and returns None: nothing a handler returns lands in
status. The timer of each resource is a kopf daemon that sleeps until the time the last
reconcile asked for (`requeue_after`, clamped to [minInterval, resync]) — each resource
has its own interval — and wakes early when a handler reconciled meanwhile.

A ModelDeployment whose variants may scale to zero (`spec.autoscaling.minReplicas: 0`)
also has an activations daemon: it keeps a long poll open on each ready router pod's
admin port (`GET /admin/activations`) and reconciles the deployment the moment a
router holds a request at zero replicas, instead of at its next timer tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf

from pilotage.api.common import GROUP, VERSION
from pilotage.operator import names
from pilotage.operator.reconcile import Reconciler
from pilotage.operator.settings import OperatorSettings
from pilotage.wire.admin import RouterAdminError, wait_activations

log = logging.getLogger("pilotage.operator")

ACTIVATION_WAIT_SECONDS = 20.0
"""How long one long poll on a router's admin port stays open (the router's limit is 60)."""
ACTIVATION_BACKOFF_SECONDS = (0.5, 10.0)
"""After a wake, or while the router cannot be polled: first and longest pause (doubling
while it keeps failing), so a starting pod's held requests or a router that is down
never make the daemon spin."""

ACTIVATION_MIN_POLL_SECONDS = 1.0
"""A poll answered sooner than this with nothing held is followed by a pause too."""

Poll = Literal["held", "idle", "down"]


@dataclass
class _Schedule:
    due: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Scheduler:
    """When each resource is due for its next reconcile (event-loop side)."""

    def __init__(self, reconciler: Reconciler, settings: OperatorSettings):
        self.reconciler = reconciler
        self.settings = settings
        self._due: dict[tuple[str, str, str], _Schedule] = {}

    def _clamp(self, delay: float | None) -> float:
        if delay is None:
            return self.settings.resync_seconds
        return min(max(delay, self.settings.min_interval_seconds), self.settings.resync_seconds)

    def _schedule(self, key: tuple[str, str, str]) -> _Schedule:
        loop = asyncio.get_running_loop()
        if key not in self._due:
            self._due[key] = _Schedule(due=loop.time() + self.settings.resync_seconds)
        return self._due[key]

    async def reconcile_now(self, plural: str, namespace: str, name: str) -> None:
        key = (plural, namespace, name)
        try:
            delay = await asyncio.to_thread(self.reconciler.reconcile, plural, namespace, name)
        except Exception:  # a reconcile never kills its caller; try again soon
            log.exception("%s/%s/%s: reconcile failed", plural, namespace, name)
            delay = self.settings.min_interval_seconds * 10
        schedule = self._schedule(key)
        schedule.due = asyncio.get_running_loop().time() + self._clamp(delay)
        schedule.changed.set()

    def poke(self, plural: str, namespace: str, name: str) -> None:
        """Make a resource's timer reconcile now (a child of it changed)."""
        schedule = self._due.get((plural, namespace, name))
        if schedule is not None:
            schedule.due = asyncio.get_running_loop().time()
            schedule.changed.set()

    async def run_timer(self, plural: str, namespace: str, name: str, stopped: Any) -> None:
        key = (plural, namespace, name)
        loop = asyncio.get_running_loop()
        try:
            while not stopped:
                schedule = self._schedule(key)
                wait = schedule.due - loop.time()
                if wait > 0:
                    schedule.changed.clear()
                    waiter = asyncio.ensure_future(schedule.changed.wait())
                    stop = asyncio.ensure_future(stopped.wait())
                    await asyncio.wait(
                        {waiter, stop}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiter.cancel()
                    stop.cancel()
                    continue
                await self.reconcile_now(plural, namespace, name)
        finally:
            self._due.pop(key, None)
            self.reconciler.forget(plural, namespace, name)

    async def watch_activations(self, namespace: str, name: str, stopped: Any) -> None:
        """Until ``stopped``: poke the deployment whenever one of its router pods holds
        requests at zero. Errors are logged and retried after a pause, never raised."""
        stop = asyncio.ensure_future(stopped.wait())
        failures = 0
        try:
            while not stopped:
                started = asyncio.get_running_loop().time()
                try:
                    outcome = await self._poll_activations(namespace, name, stop)
                except Exception:  # never let the daemon die: kopf would not restart it
                    log.exception(
                        "modeldeployments/%s/%s: activations poll failed", namespace, name
                    )
                    outcome = "down"
                if stopped:
                    break
                if outcome == "held":
                    failures = 0
                    self.poke("modeldeployments", namespace, name)
                elif outcome == "idle":
                    failures = 0
                    if asyncio.get_running_loop().time() - started >= ACTIVATION_MIN_POLL_SECONDS:
                        continue
                    # answered at once with nothing held (not a long poll): no spinning
                else:
                    failures += 1
                first, longest = ACTIVATION_BACKOFF_SECONDS
                pause = min(first * 2 ** max(failures - 1, 0), longest)
                await asyncio.wait({stop}, timeout=pause)
        finally:
            stop.cancel()

    async def _poll_activations(self, namespace: str, name: str, stop: asyncio.Future[Any]) -> Poll:
        """One long poll on every ready router pod at once: "held" as soon as one holds a
        request, "idle" when they answered with none, "down" when none could be asked."""
        platform = self.reconciler.platform
        admin = await asyncio.to_thread(platform.router_admin, namespace, name)
        if admin is None or not admin[0]:
            return "down"
        urls, token = admin
        timeout = ACTIVATION_WAIT_SECONDS + self.settings.http_timeout_seconds
        pending: set[asyncio.Future[Any]] = {_long_poll(u, token, timeout) for u in urls}
        answered = False
        while pending:
            done, _ = await asyncio.wait(pending | {stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                return "idle"
            for future in done:
                pending.discard(future)
                answer, error = future.result()
                if error is not None:
                    log.debug("modeldeployments/%s/%s: %s", namespace, name, error)
                    continue
                answered = True
                if isinstance(answer, Mapping) and answer.get("held"):
                    return "held"
        return "idle" if answered else "down"


def _long_poll(url: str, token: str, timeout: float) -> asyncio.Future[Any]:
    """`wait_activations` in a thread of its own (a long poll would hold one of the
    loop's executor threads, which the reconciles need), resolved in the loop with
    (answer, None) or (None, error). A poll given up on (deleted deployment) ends by
    itself within ``timeout``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: tuple[Any, RouterAdminError | None]) -> None:
        if not future.done():
            future.set_result(outcome)

    def run() -> None:
        outcome: tuple[Any, RouterAdminError | None]
        try:
            outcome = (wait_activations(url, token, ACTIVATION_WAIT_SECONDS, timeout), None)
        except RouterAdminError as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="pilotage-activations", daemon=True).start()
    return future


def scales_to_zero(spec: Mapping[str, Any]) -> bool:
    """Whether a ModelDeployment spec lets its variants go to zero replicas."""
    auto = spec.get("autoscaling")
    return isinstance(auto, Mapping) and auto.get("minReplicas", 1) == 0


def build_registry(scheduler: Scheduler) -> kopf.OperatorRegistry:
    """A registry with the handlers of every kind the reconciler knows."""
    registry = kopf.OperatorRegistry()
    for plural in scheduler.reconciler.kinds:
        _register(registry, scheduler, plural)
    _watch_children(registry, scheduler)
    return registry


PLURAL_OF_KIND = {
    "Dataset": "datasets",
    "TrainingJob": "trainingjobs",
    "ModelDeployment": "modeldeployments",
    "DriftMonitor": "driftmonitors",
}


def _watch_children(registry: kopf.OperatorRegistry, scheduler: Scheduler) -> None:
    """A Job finishing or a Deployment becoming ready wakes its owner at once, instead of
    at the owner's next timer tick. Only children this operator labelled are watched."""

    async def on_child(meta: Any, namespace: str | None, **_: Any) -> None:
        for ref in meta.get("ownerReferences") or []:
            plural = PLURAL_OF_KIND.get(ref.get("kind", ""))
            if ref.get("controller") and plural and ref.get("apiVersion", "").startswith(GROUP):
                scheduler.poke(plural, namespace or "default", ref["name"])

    managed = {names.LABEL_MANAGED_BY: names.MANAGER}
    for group, version, plural in (("batch", "v1", "jobs"), ("apps", "v1", "deployments")):
        kopf.on.event(
            group, version, plural, registry=registry, labels=managed, id=f"children-{plural}"
        )(on_child)


def _register(registry: kopf.OperatorRegistry, scheduler: Scheduler, plural: str) -> None:
    async def on_change(namespace: str | None, name: str, **_: Any) -> None:
        await scheduler.reconcile_now(plural, namespace or "default", name)

    async def timer(namespace: str | None, name: str, stopped: Any, **_: Any) -> None:
        await scheduler.run_timer(plural, namespace or "default", name, stopped)

    for decorator in (kopf.on.resume, kopf.on.create, kopf.on.update):
        decorator(GROUP, VERSION, plural, registry=registry, id=f"reconcile-{plural}")(on_change)
    kopf.daemon(
        GROUP, VERSION, plural, registry=registry, id=f"timer-{plural}", cancellation_timeout=5.0
    )(timer)
    if plural == "modeldeployments":

        async def activations(namespace: str | None, name: str, stopped: Any, **_: Any) -> None:
            await scheduler.watch_activations(namespace or "default", name, stopped)

        # kopf starts it while the filter holds and stops it when it no longer does
        # (autoscaling removed or minReplicas raised) or the resource is deleted
        kopf.daemon(
            GROUP,
            VERSION,
            plural,
            registry=registry,
            id="activations-modeldeployments",
            when=lambda spec, **_: scales_to_zero(spec),
            cancellation_timeout=5.0,
        )(activations)


def kopf_settings(settings: OperatorSettings, priority: int) -> kopf.OperatorSettings:
    """kopf's own settings: fixed finalizer, progress kept in `pilotage.dev/` annotations
    (never in status), peering, and only warnings posted as kopf's own Events."""
    ks = kopf.OperatorSettings()
    ks.persistence.finalizer = names.FINALIZER
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=names.ANNOTATION_PREFIX
    )
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    ks.posting.level = logging.WARNING
    ks.peering.name = settings.peering_name
    ks.peering.priority = priority
    ks.peering.standalone = settings.standalone
    ks.peering.mandatory = not settings.standalone
    # Namespaced, the chart grants nothing cluster-scoped: kopf's scanning of namespaces
    # and CRDs would be refused (nine 403 errors each at every start). It serves the
    # namespaces it is given and the kinds present at start-up.
    ks.scanning.disabled = not settings.clusterwide
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.execution.max_workers = 16
    return ks
