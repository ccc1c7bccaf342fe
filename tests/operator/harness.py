"""What a cluster would do beside the API server: a kubelet that finishes Jobs and makes
Deployments ready, and a router pod's admin API with controllable stats."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf
import yaml
from kubernetes import client as k8s

from pilotage.operator import names
from pilotage.operator.app import OperatorApp, build_operator
from pilotage.operator.platform import Addresses
from pilotage.operator.settings import OperatorSettings
from pilotage.wire.routes import RoutingError, parse_table
from tests.operator.conftest import DEADLINE, api_url, eventually
from tests.operator.emulator import Cluster
from tests.operator.manifests import BASE, CRDS, NS, dataset, summary, training_job

LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


async def finish_job(cluster: Cluster, namespace: str, name: str, summary: dict[str, Any]) -> None:
    """Play the kubelet and the Job controller: the pod ran, wrote its termination
    message, and the Job completed."""
    await record_job_result(cluster, namespace, name, json.dumps(summary), 0)


async def record_job_result(
    cluster: Cluster, namespace: str, name: str, message: str, exit_code: int
) -> dict[str, Any] | None:
    """The Job's pod terminated with ``message`` and ``exit_code``; the Job is Complete
    (exit 0) or Failed. Returns the message parsed as JSON (None when it is not)."""
    job = cluster.get("batch/v1/jobs", namespace, name)
    assert job is not None, f"no Job {name}"
    template = job["spec"]["template"]
    pod = {
        "metadata": {
            "name": f"{name}-pod",
            "namespace": namespace,
            "labels": dict(template["metadata"]["labels"]),
        },
        "spec": template["spec"],
    }
    created = await cluster_call(cluster, "POST", f"/api/v1/namespaces/{namespace}/pods", pod)
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
    }
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": "trainer",
                "ready": False,
                "restartCount": 0,
                "image": "x",
                "imageID": "",
                "state": {"terminated": terminated},
            }
        ],
    }
    await cluster_call(
        cluster,
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/{created['metadata']['name']}/status",
        {"status": status},
    )
    now = "2024-05-01T10:00:00Z"
    condition = "Complete" if exit_code == 0 else "Failed"
    job_status: dict[str, Any] = {
        "startTime": now,
        "conditions": [{"type": condition, "status": "True", "lastTransitionTime": now}],
    }
    if exit_code == 0:
        job_status.update(completionTime=now, succeeded=1)
    else:
        job_status.update(failed=1)
    await cluster_call(
        cluster,
        "PATCH",
        f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}/status",
        {"status": job_status},
    )
    try:
        doc = json.loads(message)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


async def cluster_call(
    cluster: Cluster, method: str, path: str, body: Any = None, allow: tuple[int, ...] = ()
) -> Any:
    """One API request; a status >= 300 fails the test unless it is in `allow` (None)."""
    url = str(cluster.servers[0].url).rstrip("/") + path
    content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    headers = {"Content-Type": content_type}
    if cluster.token is not None:
        headers["Authorization"] = f"Bearer {cluster.token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=json.dumps(body), headers=headers) as r,
    ):
        doc = await r.json()
        if r.status in allow:
            return None
        assert r.status < 300, doc
        return doc


async def kubelet(cluster: Cluster, server_pods: bool = False) -> None:
    """Forever: every Deployment becomes ready; router Deployments get a ready pod on
    127.0.0.1 (where the fake router admin API listens). An object deleted between the
    listing and the write (the operator removing a server: likelier the busier the
    machine) is skipped, as a kubelet would; a 404 used to end this task silently, and no
    Deployment became ready after it.

    With ``server_pods``, a server Deployment also gets one pod per replica, each with
    its own address (127.0.0.2, .3, ...: nothing listens there), created ready; its
    `readyReplicas` counts the ready ones, so a pod the test makes unready or deletes
    shows in the Deployment's status (as the ReplicaSet controller makes it), and a
    deleted pod is replaced by a new one at a new address."""
    gone = (404, 409)
    addresses = iter(range(2, 255))
    while True:
        for dep in cluster.list("apps/v1/deployments"):
            meta, spec = dep["metadata"], dep["spec"]
            replicas = spec.get("replicas", 1)
            labels = meta.get("labels") or {}
            ready = replicas
            if server_pods and labels.get(names.LABEL_ROLE) == names.ROLE_SERVER:
                ready = await _server_pods(cluster, dep, addresses)
            status = dep.get("status") or {}
            if (
                status.get("observedGeneration") != meta["generation"]
                or status.get("readyReplicas") != ready
            ):
                await cluster_call(
                    cluster,
                    "PATCH",
                    f"/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}/status",
                    {
                        "status": {
                            "observedGeneration": meta["generation"],
                            "replicas": replicas,
                            "readyReplicas": ready,
                            "updatedReplicas": replicas,
                            "availableReplicas": ready,
                        }
                    },
                    allow=gone,
                )
            pod_name = f"{meta['name']}-pod"
            if labels.get(names.LABEL_ROLE) == names.ROLE_ROUTER and not cluster.get(
                "v1/pods", meta["namespace"], pod_name
            ):
                await _ready_pod(cluster, dep, pod_name, "127.0.0.1")
        await asyncio.sleep(0.02)


async def _ready_pod(cluster: Cluster, dep: dict[str, Any], name: str, ip: str) -> None:
    """A running, ready pod of ``dep`` at ``ip`` (skipped if it is gone meanwhile)."""
    namespace = dep["metadata"]["namespace"]
    template = dep["spec"]["template"]
    pod = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }
    gone = (404, 409)
    await cluster_call(cluster, "POST", f"/api/v1/namespaces/{namespace}/pods", pod, gone)
    await cluster_call(
        cluster,
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/{name}/status",
        {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        },
        allow=gone,
    )


def server_pods_of(cluster: Cluster, dep_name: str) -> list[dict[str, Any]]:
    """The pods `kubelet(server_pods=True)` runs for server Deployment ``dep_name``."""
    mine = re.compile(rf"{re.escape(dep_name)}-r[0-9]+")
    return [
        p
        for p in cluster.list("v1/pods", NS)
        if mine.fullmatch(p["metadata"]["name"]) and not p["metadata"].get("deletionTimestamp")
    ]


async def _server_pods(cluster: Cluster, dep: dict[str, Any], addresses: Any) -> int:
    """One pod per replica of a server Deployment (extra ones deleted, missing ones
    started at a fresh address); returns how many are ready."""
    meta = dep["metadata"]
    replicas = dep["spec"].get("replicas", 1)
    pods = sorted(server_pods_of(cluster, meta["name"]), key=lambda p: p["metadata"]["name"])
    for extra in pods[replicas:]:
        await cluster_call(
            cluster,
            "DELETE",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{extra['metadata']['name']}",
            allow=(404,),
        )
    for _ in range(replicas - len(pods)):
        n = next(addresses)
        await _ready_pod(cluster, dep, f"{meta['name']}-r{n}", f"127.0.0.{n}")
    return sum(
        1
        for p in server_pods_of(cluster, meta["name"])
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    )


@contextlib.asynccontextmanager
async def running_kubelet(cluster: Cluster, server_pods: bool = False) -> AsyncIterator[None]:
    task = asyncio.create_task(kubelet(cluster, server_pods))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class FakeRouterAdmin:
    """A router pod's admin API: records pushed routing tables, serves stats the test sets.

    It checks the bearer token against the Secret the operator created, and every pushed
    document with the real router's parser: an invalid one is answered 400 with the
    parser's error (as `pilotage route` does), counted in `refused` and not applied. A
    test can make it refuse valid tables too (`refuse_with`)."""

    def __init__(self, cluster: Cluster, namespace: str, deployment: str):
        self.cluster = cluster
        self.secret = (namespace, names.router_token_secret_name(deployment))
        self.tables: list[dict[str, Any]] = []
        self.rejected = 0
        self.refused: list[str] = []
        self.refuse_with: str | None = None
        self.counters: dict[tuple[str, str], dict[str, Any]] = {}
        self.comparisons = {"agree": 0, "disagree": 0, "error": 0}
        # autoscaling load: requests in flight per (variant, version), held per variant
        self.concurrency: dict[tuple[str, str], float] = {}
        self.held: dict[str, int] = {}
        self._busy: dict[tuple[str, str], tuple[float, float]] = {}  # (integral, at)
        self.started = time.monotonic()
        # `GET /admin/activations` long polls: started in all, open now; `release` ends
        # the open ones with nothing held
        self.activation_polls = 0
        self.open_polls = 0
        self._release = asyncio.Event()

    def _authorized(self, request: aiohttp.web.Request) -> bool:
        secret = self.cluster.get("v1/secrets", *self.secret)
        if secret is None:
            return False
        token = base64.b64decode(secret["data"]["token"]).decode()
        ok = request.headers.get("Authorization") == f"Bearer {token}"
        self.rejected += not ok
        return ok

    def add_requests(
        self, variant: str, version: str, count: int, latency_s: float, errors: int = 0
    ) -> None:
        entry = self.counters.setdefault(
            (variant, version),
            {"requests": 0, "errors": 0, "counts": [0] * (len(LATENCY_BOUNDS) + 1)},
        )
        entry["requests"] += count
        entry["errors"] += errors
        bucket = next(
            (i for i, b in enumerate(LATENCY_BOUNDS) if latency_s <= b), len(LATENCY_BOUNDS)
        )
        entry["counts"][bucket] += count

    def stats(self) -> dict[str, Any]:
        table = self.tables[-1] if self.tables else {"variants": [], "revision": None}
        variants = {}
        for v in table["variants"]:
            c = self.counters.get(
                (v["name"], v["version"]),
                {"requests": 0, "errors": 0, "counts": [0] * (len(LATENCY_BOUNDS) + 1)},
            )
            key = (v["name"], v["version"])
            now = time.monotonic()
            busy, at = self._busy.get(key, (0.0, now))
            busy += self.concurrency.get(key, 0.0) * (now - at)
            self._busy[key] = (busy, now)
            if self.concurrency.get(key):
                self.add_requests(v["name"], v["version"], 1, 0.01)  # keeps it active
            variants[v["name"]] = {
                "version": v["version"],
                "weight": v["weight"],
                "requests": c["requests"],
                "errors": c["errors"],
                "latency": {"le": list(LATENCY_BOUNDS), "counts": list(c["counts"])},
                "inFlight": round(self.concurrency.get(key, 0.0)),
                "busySeconds": busy,
                "held": self.held.get(v["name"], 0),
            }
        mirrored = sum(self.comparisons.values())
        totals = {"mirrored": mirrored, "dropped": 0, "comparisons": dict(self.comparisons)}
        return {
            "revision": table["revision"],
            "uptimeSeconds": time.monotonic() - self.started,
            "variants": variants,
            "retired": [],
            "shadowTotals": totals,
        }

    def add_comparisons(self, agree: int, disagree: int = 0) -> None:
        """Shadow comparisons the router made (cumulative, as the real one counts)."""
        self.comparisons["agree"] += agree
        self.comparisons["disagree"] += disagree

    def weights(self) -> dict[str, int]:
        """Variant → weight of the last table pushed."""
        return {v["name"]: v["weight"] for v in self.tables[-1]["variants"]} if self.tables else {}

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if not self._authorized(request):
            return aiohttp.web.json_response({"error": "token"}, status=403)
        if request.method == "PUT" and request.path == "/admin/routes":
            document = await request.json()
            try:
                parse_table(document)
            except RoutingError as exc:
                return self._refuse(str(exc))
            if self.refuse_with is not None:
                return self._refuse(self.refuse_with)
            self.tables.append(document)
            return aiohttp.web.json_response({"applied": True})
        if request.method == "GET" and request.path == "/admin/stats":
            return aiohttp.web.json_response(self.stats())
        if request.method == "GET" and request.path == "/admin/activations":
            return await self._activations(float(request.query.get("wait", "25")))
        return aiohttp.web.json_response({"error": "no such endpoint"}, status=404)

    async def _activations(self, wait: float) -> aiohttp.web.Response:
        """As the router: at once when requests are held, else when one is, or after
        ``wait`` seconds (or at `release`) with nothing held."""
        self.activation_polls += 1
        self.open_polls += 1
        try:
            deadline = time.monotonic() + wait
            release = self._release
            while not self.waiting() and time.monotonic() < deadline and not release.is_set():
                await asyncio.sleep(0.02)
            return aiohttp.web.json_response({"held": self.waiting()})
        finally:
            self.open_polls -= 1

    def waiting(self) -> dict[str, int]:
        return {name: n for name, n in self.held.items() if n > 0}

    def release(self) -> None:
        """Answer every open long poll now (with what is held)."""
        self._release.set()
        self._release = asyncio.Event()

    def _refuse(self, error: str) -> aiohttp.web.Response:
        self.refused.append(error)
        return aiohttp.web.json_response({"error": error}, status=400)

    @contextlib.asynccontextmanager
    async def serving(self, port: int) -> AsyncIterator[FakeRouterAdmin]:
        server = aiohttp.web.Server(self.handle)
        runner = aiohttp.web.ServerRunner(server)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            yield self
        finally:
            await runner.cleanup()


async def apply_crds(cluster: Cluster) -> None:
    """The CRDs of crds/, as `kubectl apply -f crds/` would."""
    for crd in sorted(CRDS.glob("*.yaml")):
        await cluster_call(
            cluster,
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml.safe_load(crd.read_text()),
        )


def get(cluster: Cluster, plural: str, name: str) -> dict[str, Any]:
    return cluster.get(f"pilotage.dev/v1alpha1/{plural}", NS, name) or {}


def status(cluster: Cluster, plural: str, name: str) -> dict[str, Any]:
    return get(cluster, plural, name).get("status") or {}


def events(cluster: Cluster, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.list("v1/events", NS) if e.get("reason") == reason]


@contextlib.asynccontextmanager
async def operator(
    cluster: Cluster, settings: OperatorSettings, addresses: Addresses | None = None
) -> AsyncIterator[OperatorApp]:
    """The real operator (kopf.operator) as a task of this loop until the block ends."""
    cfg = k8s.Configuration(host=api_url(cluster))
    if cluster.token is not None:
        cfg.api_key["BearerToken"] = f"Bearer {cluster.token}"
    app = build_operator(settings, cfg, addresses=addresses)
    stop, ready = asyncio.Event(), asyncio.Event()
    app.kopf_settings.watching.reconnect_backoff = 0.1
    task = asyncio.create_task(kopf.operator(**app.run_kwargs(), stop_flag=stop, ready_flag=ready))
    await asyncio.wait_for(ready.wait(), DEADLINE)
    try:
        yield app
    finally:
        stop.set()
        # kopf waits up to 5 s for every task created while it ran: in this shared loop
        # that includes the emulator's handlers of the kubernetes client's keep-alive
        # connections. Closing the client's idle connections ends them (a process
        # operator has its own loop and stops at once: see test_e2e).
        while not task.done():
            app.kube.api.rest_client.pool_manager.clear()
            await asyncio.wait({task}, timeout=0.1)
        task.result()


async def ready_dataset(cluster: Cluster) -> None:
    """The `iris` Dataset, its profiling Job finished by the test: Ready."""
    await cluster_call(cluster, "POST", f"{BASE}/datasets", dataset())
    run = await eventually(lambda: status(cluster, "datasets", "iris").get("run"), what="run")
    await eventually(lambda: cluster.get("batch/v1/jobs", NS, run), what="profiling Job")
    await finish_job(cluster, NS, run, {"rows": 150, "columns": 5, "fingerprint": "ab" * 32})
    await eventually(
        lambda: status(cluster, "datasets", "iris").get("phase") == "Ready", what="Dataset Ready"
    )


async def trained(cluster: Cluster, version: str) -> None:
    """TrainingJob ``version`` (labelled app=iris), its Job finished with `summary(version)`."""
    await cluster_call(cluster, "POST", f"{BASE}/trainingjobs", training_job(version))
    run = await eventually(
        lambda: status(cluster, "trainingjobs", version).get("run"), what=f"{version} run"
    )
    await eventually(lambda: cluster.get("batch/v1/jobs", NS, run), what=f"{version} Job")
    await finish_job(cluster, NS, run, summary(version))
    await eventually(
        lambda: status(cluster, "trainingjobs", version).get("phase") == "Succeeded",
        what=f"{version} Succeeded",
    )


def write_kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "emulator",
                        "context": {"cluster": "emulator", "user": "tester", "namespace": NS},
                    }
                ],
                "current-context": "emulator",
            }
        )
    )
    return path
