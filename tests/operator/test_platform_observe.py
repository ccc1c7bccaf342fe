"""The Kubernetes platform's observations on the emulated API server: the DriftMonitor that
speaks for a deployment several of them watch, and a server pod's drift document read
with its reservoir of recent rows (what exact KS/Wasserstein tests need)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
from kubernetes import client as k8s

from pilotage.control.platform import Observer
from pilotage.control.types import EnsureServer, RecentRows
from pilotage.operator import build
from pilotage.operator.kube import Kube
from pilotage.operator.platform import Addresses, KubernetesPlatform
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import api_url
from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call
from tests.operator.manifests import BASE, NS, drift_monitor
from tests.support.procs import free_port

# A server's `GET /v1/models/iris/drift` answer (the shape docs/serving.md shows).
DRIFT_DOC: dict[str, Any] = {
    "model": "iris",
    "version": "iris-v1",
    "rows": 3,
    "features": {"petal_length": {"0": 2, "1": 1, "null": 0}},
    "predictions": {"kind": "classes", "counts": {"0": 2, "1": 0, "2": 1}},
    "reservoir": {
        "capacity": 1000,
        "columns": ["petal_length", "petal_width"],
        "rows": [[1.4, 0.2], [5.0, None], [1.3, 0.2]],
    },
}


def platform_for(cluster: Cluster, addresses: Addresses | None = None) -> KubernetesPlatform:
    settings = OperatorSettings(standalone=True, liveness_port=None)
    cfg = k8s.Configuration(host=api_url(cluster))
    if cluster.token is not None:
        cfg.api_key["BearerToken"] = f"Bearer {cluster.token}"
    return KubernetesPlatform(Kube(k8s.ApiClient(cfg)), settings, addresses)


async def monitor(
    cluster: Cluster, name: str, deployment: str, phase: str, score: float, rollback: bool
) -> None:
    body = drift_monitor()
    body["metadata"]["name"] = name
    body["spec"]["deploymentRef"]["name"] = deployment
    body["spec"]["onDrift"]["rollback"] = rollback
    await cluster_call(cluster, "POST", f"{BASE}/driftmonitors", body)
    status = {
        "phase": phase,
        "observedGeneration": 1,
        "driftScore": score,
        "consecutiveDrifting": 1 if phase == "Drifting" else 0,
        "lastCheckTime": "2026-01-01T00:00:00Z",
        "version": "iris-v1",
        "message": f"{name} says {phase}",
    }
    await cluster_call(cluster, "PATCH", f"{BASE}/driftmonitors/{name}/status", {"status": status})


async def test_the_most_alarming_monitor_speaks_for_the_deployment(cluster: Cluster) -> None:
    await apply_crds(cluster)
    observer = Observer(platform_for(cluster))
    assert await asyncio.to_thread(observer.drift, NS, "iris") is None

    await monitor(cluster, "calm-high", "iris", "Healthy", 0.4, rollback=True)
    await monitor(cluster, "drifting", "iris", "Drifting", 0.25, rollback=False)
    await monitor(cluster, "other-deployment", "other", "Drifting", 0.9, rollback=True)
    signal = await asyncio.to_thread(observer.drift, NS, "iris")
    assert signal is not None and signal.monitor == "drifting"
    assert signal.drifting and not signal.rollback and signal.version == "iris-v1"

    # Two rollback signals of equal score: the name decides, not the listing order.
    await monitor(cluster, "rollback-b", "iris", "Drifting", 0.25, rollback=True)
    await monitor(cluster, "rollback-a", "iris", "Drifting", 0.25, rollback=True)
    signal = await asyncio.to_thread(observer.drift, NS, "iris")
    assert signal is not None and signal.monitor == "rollback-a" and signal.rollback


class PodsOnLoopback(Addresses):
    """Every pod's port answered by one local test server."""

    def __init__(self, settings: OperatorSettings, port: int):
        super().__init__(settings)
        self.port = port

    def pod_url(self, pod: dict[str, Any], port: int) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def drift_endpoint(port: int) -> AsyncIterator[list[str]]:
    """`GET /v1/models/iris/drift` answering DRIFT_DOC; yields the paths requested."""
    paths: list[str] = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        paths.append(request.path)
        if request.path != "/v1/models/iris/drift":
            return aiohttp.web.json_response({"error": "no such path"}, status=404)
        return aiohttp.web.json_response(DRIFT_DOC)

    runner = aiohttp.web.ServerRunner(aiohttp.web.Server(handle))
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield paths
    finally:
        await runner.cleanup()


async def server_pod(cluster: Cluster, name: str, ready: bool) -> dict[str, Any]:
    pod = {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": build.server_selector("iris", "iris-v1"),
        },
        "spec": {"containers": [{"name": "server", "image": "pilotage"}]},
    }
    created: dict[str, Any] = await cluster_call(
        cluster, "POST", f"/api/v1/namespaces/{NS}/pods", pod
    )
    status = {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    await cluster_call(
        cluster, "PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status", {"status": status}
    )
    return created


async def test_server_counters_carry_the_reservoir_per_ready_pod(cluster: Cluster) -> None:
    port = free_port()
    settings = OperatorSettings(standalone=True, liveness_port=None)
    platform = platform_for(cluster, PodsOnLoopback(settings, port))
    ready = await server_pod(cluster, "iris-iris-v1-abc", ready=True)
    await server_pod(cluster, "iris-iris-v1-starting", ready=False)
    async with drift_endpoint(port) as paths:
        counters = await asyncio.to_thread(platform.server_counters, NS, "iris", "iris-v1")
    assert paths == ["/v1/models/iris/drift"], "only the ready pod is read"
    (one,) = counters
    assert one.replica == f"iris-iris-v1-abc@{ready['metadata']['uid']}"
    assert one.rows == 3 and one.features == {"petal_length": {"0": 2, "1": 1, "null": 0}}
    assert one.predictions == {"0": 2, "1": 0, "2": 1}
    assert one.reservoir == RecentRows(
        ("petal_length", "petal_width"), ((1.4, 0.2), (5.0, None), (1.3, 0.2))
    )


def _crash_looping_status(restarts: int, message: str) -> dict[str, Any]:
    """A pod status as the kubelet writes it for a container that exits at every start."""
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [
            {
                "name": "server",
                "ready": False,
                "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
            }
        ],
    }


async def test_a_crash_looping_server_pod_makes_its_version_failing(cluster: Cluster) -> None:
    """Issue 16, item 15: the operator reads CrashLoopBackOff from the server's pods, with
    the cause from the termination message (the server's last log line)."""
    settings = OperatorSettings(standalone=True, liveness_port=None)
    platform = platform_for(cluster)
    owner = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": NS, "uid": "0000-1111"},
    }
    action = EnsureServer("iris", "iris-v1", "pvc://artifacts/iris-v1", 1)
    dep = build.build_server_deployment(action, owner, settings)
    await cluster_call(cluster, "POST", f"/apis/apps/v1/namespaces/{NS}/deployments", dep)
    pod = await server_pod(cluster, "iris-iris-v1-abc", ready=False)
    log = "loading model\npilotage serve: error: refusing to serve pvc://artifacts/iris-v1: sha256 of model.onnx is 1f but model.json says 9a (corrupt or tampered artifact)\n"
    await cluster_call(
        cluster,
        "PATCH",
        f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status",
        {"status": _crash_looping_status(5, log)},
    )
    (state,) = await asyncio.to_thread(platform.servers, NS, "iris")
    assert state.version == "iris-v1" and not state.ready and state.failing
    assert state.restarts == 5
    assert state.message.startswith("server exited: pilotage serve: error: refusing to serve")
    assert state.message.endswith("(CrashLoopBackOff)")
