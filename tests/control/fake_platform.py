"""An in-memory `Platform` for the reconcilers' tests, the way httpx tests go through a mock
transport: the loop runs as the shells run it (observe → reconcile → carry out the actions
→ write the status), against a world the test steers. Runs finish when the test says so,
servers and routers come up when it boots them, the router serves the tables it is given
(or holds the old one) and counts the requests the test sends through it.

Actions are for the resource's namespace, as in the embedded runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pilotage.api import DriftMonitor, ModelDeployment, Resource, TrainingJob
from pilotage.api.dataset import Dataset
from pilotage.api.modelcard import ModelCard
from pilotage.control.common import format_time
from pilotage.control.observe import training_job_info
from pilotage.control.platform import Observer, carry_out, namespace_of, reconcile
from pilotage.control.types import (
    Action,
    CreateTrainingJob,
    DeleteRun,
    EnsureRouter,
    EnsureServer,
    Event,
    RemoveServer,
    Result,
    RouterState,
    RouterStats,
    RouteTable,
    RunState,
    ServerCounters,
    ServerState,
    SetRoutes,
    StartRun,
    TrainingJobInfo,
    VariantStats,
)
from tests.control.factories import ARTIFACTS, T0, add, at, variant

ROUTER_ENDPOINT = "http://router.fake:8080"


@dataclass
class Servers:
    """The replicas of one (deployment, version)."""

    model_uri: str
    replicas: int
    ready: bool = False


@dataclass
class Router:
    replicas: int
    ready: bool = False
    table: RouteTable | None = None
    """The last table it was given."""
    serving: RouteTable | None = None
    """The table it routes by (the given one, unless the test holds tables back)."""
    counters: dict[tuple[str, str], VariantStats] = field(default_factory=dict)
    """Cumulative counters per (variant, version), as the router reports them."""


class FakePlatform:
    """Resources, runs, servers and routers in dicts; every action carried out is logged."""

    artifact_uri = ARTIFACTS

    def __init__(self) -> None:
        self.now: datetime = T0
        self.objects: dict[tuple[str, str, str], Resource] = {}
        self.runs: dict[tuple[str, str], RunState] = {}
        self.servers_of: dict[tuple[str, str, str], Servers] = {}
        self.routers: dict[tuple[str, str], Router] = {}
        self.cards: dict[str, ModelCard] = {}
        self.card_reads: list[str] = []
        self.counters: dict[tuple[str, str, str], tuple[ServerCounters, ...]] = {}
        self.actions: list[Action] = []
        self.events: list[tuple[str, Event]] = []
        self.hold_tables = False
        """When set, routers keep routing by the table they had (a push still under way)."""
        self.observer = Observer(self)

    # ---- the loop ----------------------------------------------------------------------

    def reconcile(self, kind: str, name: str, seconds: float, namespace: str = "default") -> Any:
        """One reconcile of a stored resource at `seconds` after T0, as a shell does it."""
        self.now = at(seconds)
        resource = self.get(kind, name, namespace)
        result: Result[Any] = reconcile(resource, self.observer.observe(resource), self.now)
        for action in result.actions:
            carry_out(self, namespace, action)
        self.put(resource.model_copy(update={"status": result.status}))
        self.events += [(f"{kind}/{name}", e) for e in result.events]
        return result

    # ---- what the test does to the world -------------------------------------------------

    def put(self, resource: Resource) -> None:
        self.objects[(resource.kind, namespace_of(resource), resource.name)] = resource

    def get(self, kind: str, name: str, namespace: str = "default") -> Any:
        return self.objects[(kind, namespace, name)]

    def finish_run(
        self, name: str, result: dict[str, Any] | None, ok: bool = True, namespace: str = "default"
    ) -> None:
        run = self.runs[(namespace, name)]
        self.runs[(namespace, name)] = replace(
            run,
            phase="Succeeded" if ok else "Failed",
            finished=self.now,
            result=result,
            message="" if ok else "exit 1",
        )

    def boot(self) -> None:
        """Every server and router that exists becomes ready (their pods pass readiness)."""
        for servers in self.servers_of.values():
            servers.ready = True
        for router in self.routers.values():
            router.ready = True

    def release_tables(self) -> None:
        self.hold_tables = False
        for router in self.routers.values():
            router.serving = router.table

    def send(
        self,
        deployment: str,
        requests: int,
        *,
        errors_on: str | None = None,
        seconds: float = 0.002,
        namespace: str = "default",
    ) -> None:
        """`requests` requests through the router, split by the weights it routes by;
        every request to version `errors_on` fails."""
        router = self.routers[(namespace, deployment)]
        assert router.ready and router.serving is not None, "the router serves no table"
        for v in router.serving.variants:
            share = requests * v.weight // 100
            failed = share if v.version == errors_on else 0
            more = variant(v.name, v.version, share, failed, seconds)
            key = (v.name, v.version)
            router.counters[key] = (
                add(router.counters[key], more) if key in router.counters else more
            )

    # ---- observations (Platform) ---------------------------------------------------------

    def run_state(self, namespace: str, name: str) -> RunState | None:
        return self.runs.get((namespace, name))

    def dataset(self, namespace: str, name: str) -> Dataset | None:
        found = self.objects.get(("Dataset", namespace, name))
        return found if isinstance(found, Dataset) else None

    def deployment(self, namespace: str, name: str) -> ModelDeployment | None:
        found = self.objects.get(("ModelDeployment", namespace, name))
        return found if isinstance(found, ModelDeployment) else None

    def training_jobs(
        self, namespace: str, labels: Mapping[str, str] | None = None
    ) -> tuple[TrainingJobInfo, ...]:
        infos = []
        for (kind, ns, _), tj in sorted(self.objects.items()):
            if kind != "TrainingJob" or ns != namespace or not isinstance(tj, TrainingJob):
                continue
            if any(tj.metadata.labels.get(k) != v for k, v in (labels or {}).items()):
                continue
            owner = next(iter(getattr(tj.metadata, "ownerReferences", None) or []), None)
            infos.append(
                training_job_info(
                    tj,
                    owner["kind"] if owner else None,
                    owner["name"] if owner else None,
                )
            )
        return tuple(infos)

    def drift_monitors(self, namespace: str) -> tuple[DriftMonitor, ...]:
        return tuple(
            r
            for (kind, ns, _), r in sorted(self.objects.items())
            if kind == "DriftMonitor" and ns == namespace and isinstance(r, DriftMonitor)
        )

    def servers(self, namespace: str, deployment: str) -> tuple[ServerState, ...]:
        return tuple(
            ServerState(version, s.ready, "ready" if s.ready else "starting")
            for (ns, dep, version), s in self.servers_of.items()
            if (ns, dep) == (namespace, deployment)
        )

    def router(self, namespace: str, deployment: str) -> RouterState | None:
        router = self.routers.get((namespace, deployment))
        if router is None:
            return None
        if not router.ready:
            return RouterState(ready=False, endpoint=ROUTER_ENDPOINT)
        stats = RouterStats(
            variants=tuple(router.counters.values()),
            revision=router.serving.revision if router.serving is not None else None,
        )
        return RouterState(ready=True, endpoint=ROUTER_ENDPOINT, stats=stats)

    def server_counters(
        self, namespace: str, deployment: str, version: str
    ) -> tuple[ServerCounters, ...]:
        return self.counters.get((namespace, deployment, version), ())

    def read_model_card(
        self, uri: str, served_by: tuple[str, str, str] | None = None
    ) -> ModelCard | None:
        self.card_reads.append(uri)
        return self.cards.get(uri)

    # ---- actions (Platform) ----------------------------------------------------------------

    def start_run(self, owner: str, action: StartRun) -> None:
        self.actions.append(action)
        self.runs.setdefault((owner, action.name), RunState(action.name, "Running", self.now))

    def delete_run(self, owner: str, action: DeleteRun) -> None:
        self.actions.append(action)
        self.runs.pop((owner, action.name), None)

    def ensure_server(self, owner: str, action: EnsureServer) -> None:
        self.actions.append(action)
        key = (owner, action.deployment, action.version)
        have = self.servers_of.get(key)
        if have is None or (have.model_uri, have.replicas) != (action.model_uri, action.replicas):
            self.servers_of[key] = Servers(action.model_uri, action.replicas)

    def remove_server(self, owner: str, action: RemoveServer) -> None:
        self.actions.append(action)
        self.servers_of.pop((owner, action.deployment, action.version), None)

    def ensure_router(self, owner: str, action: EnsureRouter) -> None:
        self.actions.append(action)
        self.routers.setdefault((owner, action.deployment), Router(action.replicas))

    def set_routes(self, owner: str, action: SetRoutes) -> None:
        self.actions.append(action)
        router = self.routers[(owner, action.deployment)]
        router.table = action.table
        if not self.hold_tables:
            router.serving = action.table

    def create_training_job(self, owner: str, action: CreateTrainingJob) -> None:
        self.actions.append(action)
        meta = action.manifest.get("metadata") or {}
        namespace = meta.get("namespace") or owner
        if ("TrainingJob", namespace, meta.get("name")) in self.objects:
            return
        controller = {"kind": action.owner_kind, "name": action.owner_name, "controller": True}
        manifest = {
            **action.manifest,
            "metadata": {
                **meta,
                "namespace": namespace,
                "generation": 1,
                "creationTimestamp": format_time(self.now),
                "ownerReferences": [controller],
            },
        }
        self.put(TrainingJob.model_validate(manifest))
