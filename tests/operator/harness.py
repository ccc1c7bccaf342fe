"""What a cluster would do beside the API server: a kubelet that finishes Jobs and makes
Deployments ready, and a router pod's admin API with controllable stats."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web

from pilotage.operator import names
from tests.operator.emulator import Cluster

LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


async def finish_job(cluster: Cluster, namespace: str, name: str, summary: dict[str, Any]) -> None:
    """Play the kubelet and the Job controller: the pod ran, wrote its termination
    message, and the Job completed."""
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
    terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(summary)}
    status = {
        "phase": "Succeeded",
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
    job_status = {
        "startTime": now,
        "completionTime": now,
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
    }
    await cluster_call(
        cluster,
        "PATCH",
        f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}/status",
        {"status": job_status},
    )


async def cluster_call(cluster: Cluster, method: str, path: str, body: Any = None) -> Any:
    url = str(cluster.servers[0].url).rstrip("/") + path
    content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, data=json.dumps(body), headers={"Content-Type": content_type}
        ) as r,
    ):
        doc = await r.json()
        assert r.status < 300, doc
        return doc


async def kubelet(cluster: Cluster) -> None:
    """Forever: every Deployment becomes ready; router Deployments get a ready pod on
    127.0.0.1 (where the fake router admin API listens)."""
    while True:
        for dep in cluster.list("apps/v1/deployments"):
            meta, spec = dep["metadata"], dep["spec"]
            replicas = spec.get("replicas", 1)
            status = dep.get("status") or {}
            if (
                status.get("observedGeneration") != meta["generation"]
                or status.get("readyReplicas") != replicas
            ):
                await cluster_call(
                    cluster,
                    "PATCH",
                    f"/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}/status",
                    {
                        "status": {
                            "observedGeneration": meta["generation"],
                            "replicas": replicas,
                            "readyReplicas": replicas,
                            "updatedReplicas": replicas,
                            "availableReplicas": replicas,
                        }
                    },
                )
            labels = meta.get("labels") or {}
            pod_name = f"{meta['name']}-pod"
            if labels.get(names.LABEL_ROLE) == names.ROLE_ROUTER and not cluster.get(
                "v1/pods", meta["namespace"], pod_name
            ):
                pod = {
                    "metadata": {
                        "name": pod_name,
                        "namespace": meta["namespace"],
                        "labels": spec["template"]["metadata"]["labels"],
                    },
                    "spec": spec["template"]["spec"],
                }
                await cluster_call(
                    cluster, "POST", f"/api/v1/namespaces/{meta['namespace']}/pods", pod
                )
                await cluster_call(
                    cluster,
                    "PATCH",
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{pod_name}/status",
                    {
                        "status": {
                            "phase": "Running",
                            "podIP": "127.0.0.1",
                            "conditions": [{"type": "Ready", "status": "True"}],
                        }
                    },
                )
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_kubelet(cluster: Cluster) -> AsyncIterator[None]:
    task = asyncio.create_task(kubelet(cluster))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class FakeRouterAdmin:
    """A router pod's admin API: records pushed routing tables, serves stats the test sets.

    It checks the bearer token against the Secret the operator created."""

    def __init__(self, cluster: Cluster, namespace: str, deployment: str):
        self.cluster = cluster
        self.secret = (namespace, names.router_token_secret_name(deployment))
        self.tables: list[dict[str, Any]] = []
        self.rejected = 0
        self.counters: dict[tuple[str, str], dict[str, Any]] = {}

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
            variants[v["name"]] = {
                "version": v["version"],
                "weight": v["weight"],
                "requests": c["requests"],
                "errors": c["errors"],
                "latency": {"le": list(LATENCY_BOUNDS), "counts": list(c["counts"])},
            }
        return {"revision": table["revision"], "variants": variants, "retired": []}

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if not self._authorized(request):
            return aiohttp.web.json_response({"error": "token"}, status=403)
        if request.method == "PUT" and request.path == "/admin/routes":
            self.tables.append(await request.json())
            return aiohttp.web.json_response({"applied": True})
        if request.method == "GET" and request.path == "/admin/stats":
            return aiohttp.web.json_response(self.stats())
        return aiohttp.web.json_response({"error": "no such endpoint"}, status=404)

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
