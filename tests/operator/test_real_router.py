"""A canary through the operator with the real data plane: the router Deployment's
container (`pilotage route` with its admin port and token file) and each version's
server (`pilotage serve` on a real ONNX model) run as local processes. The routing
table the operator pushes, the traffic split, and the stats the analysis judges are the
real router's; a latency fault injected into the canary server rolls it back."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pilotage.operator import names
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import eventually
from tests.operator.emulator import Cluster
from tests.operator.harness import (
    apply_crds,
    cluster_call,
    events,
    operator,
    ready_dataset,
    status,
    trained,
)
from tests.operator.kubelet import LocalAddresses, ProcessKubelet
from tests.operator.manifests import BASE, NS, model_deployment, summary
from tests.support.models import build_model

pytestmark = pytest.mark.xdist_group("operator-real-router")

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
P99_SLO_MS = 300
FAULT_MS = 800


def md_status(cluster: Cluster) -> dict[str, Any]:
    return status(cluster, "modeldeployments", "iris")


class Traffic:
    """Clients sending predictions through the router; answers counted by version."""

    def __init__(self, url: str):
        self.url = url
        self.versions: Counter[str] = Counter()
        self.started: list[tuple[float, str]] = []  # (monotonic start, answering version)
        self.failures = 0

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while True:
            started = time.monotonic()
            async with session.post(self.url, json=ROW) as r:
                await r.read()
                if r.status == 200:
                    version = r.headers["x-pilotage-model-version"]
                    self.versions[version] += 1
                    self.started.append((started, version))
                else:
                    self.failures += 1
            await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def flowing(self, clients: int = 6) -> AsyncIterator[Traffic]:
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(self._client(session)) for _ in range(clients)]
            try:
                yield self
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def get_json(url: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    method = "GET" if body is None else "POST"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.json()


async def test_canary_on_real_router_and_servers_rolls_back_on_injected_latency(
    cluster: Cluster, tmp_path: Path
) -> None:
    pvc = tmp_path / "pvc"
    for version in ("iris-v1", "iris-v2"):  # where the trainer's summary says they are
        uri = summary(version)["modelUri"].removeprefix("pvc://")
        build_model(pvc / uri, version=version)
    await apply_crds(cluster)
    settings = OperatorSettings(
        standalone=True,
        liveness_port=None,
        artifact_uri="pvc://artifacts/pilotage",
        resync_seconds=5,
        min_interval_seconds=0.05,
        # the router admin API is served by this test's own event loop, which also runs
        # the emulated API server: on a loaded machine 2 s (the default) timed it out
        http_timeout_seconds=15,
    )
    kubelet = ProcessKubelet(cluster, tmp_path / "pods", pvc)
    # /admin/faults exists only on a server started for it: the canary's pod is.
    kubelet.extra_args["iris-iris-v2"] = ["--enable-fault-injection"]
    router_port = kubelet.port(NS, names.router_name("iris"), settings.router_port)
    admin = f"http://127.0.0.1:{kubelet.port(NS, 'iris-router', settings.router_admin_port)}"
    public = f"http://127.0.0.1:{router_port}"
    predict = f"{public}/v1/models/iris:predict"
    canary_server = f"http://127.0.0.1:{kubelet.port(NS, 'iris-iris-v2', settings.server_port)}"
    stable_server = f"http://127.0.0.1:{kubelet.port(NS, 'iris-iris-v1', settings.server_port)}"
    analysis = {"interval": "1s", "minRequests": 3, "latency": {"p99Ms": P99_SLO_MS}}
    strategy = {
        "type": "Canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}]},
    }
    async with kubelet.running(), operator(cluster, settings, LocalAddresses(settings, kubelet)):
        await ready_dataset(cluster)
        await trained(cluster, "iris-v1")
        await cluster_call(
            cluster, "POST", f"{BASE}/modeldeployments", model_deployment(strategy, analysis)
        )
        await eventually(lambda: md_status(cluster).get("phase") == "Healthy", what="Healthy on v1")
        secret = cluster.get("v1/secrets", NS, names.router_token_secret_name("iris"))
        assert secret is not None
        token = base64.b64decode(secret["data"]["token"]).decode()

        # The real router took the operator's table (pushed or read from the ConfigMap)
        # and answers with the stable server's real predictions.
        routes = await get_json(f"{admin}/admin/routes", token)
        assert [(v["name"], v["weight"], v["url"]) for v in routes["variants"]] == [
            ("stable", 100, stable_server)
        ]
        answer = await get_json(predict, body=ROW)
        assert answer["predictions"] == [0, 2]

        # ---- v2: a canary at 50 %, pushed to the router's admin API ----------------------
        await trained(cluster, "iris-v2")
        await eventually(
            lambda: md_status(cluster).get("traffic") == {"stable": 50, "canary": 50},
            what="canary at 50 %",
        )
        stats = await get_json(f"{admin}/admin/stats", token)
        assert stats["weights"] == {"stable": 50, "canary": 50}
        assert stats["source"] == "admin", "the table came through PUT /admin/routes"
        configmap = cluster.get("v1/configmaps", NS, names.routes_configmap_name("iris"))
        assert configmap is not None
        assert stats["revision"] == yaml.safe_load(configmap["data"]["routes.yaml"])["revision"]
        traffic = Traffic(predict)
        async with traffic.flowing():
            passed = await eventually(
                lambda: (
                    (md_status(cluster).get("lastAnalysis") or {}).get("verdict") == "Pass"
                    and md_status(cluster)["lastAnalysis"]
                ),
                what="a passing analysis on the router's real stats",
            )
            assert passed["requests"] >= 3 and passed["p99Ms"] < P99_SLO_MS
            assert traffic.versions["iris-v1"] > 0 and traffic.versions["iris-v2"] > 0

            # ---- the canary server gets slow: the analysis reads it from the router -------
            faults = await get_json(f"{canary_server}/admin/faults", body={"latencyMs": FAULT_MS})
            assert faults["latencyMs"] == FAULT_MS
            md = await eventually(
                lambda: md_status(cluster).get("phase") == "Degraded" and md_status(cluster),
                what="rolled back",
            )
            stats = await get_json(f"{admin}/admin/stats", token)
            assert stats["weights"].get("canary", 0) == 0 and stats["weights"]["stable"] == 100
            switched = time.monotonic()  # the router ran the rollback table by then
            await eventually(
                lambda: sum(1 for t, _ in traffic.started if t > switched) > 50,
                what="traffic after the rollback",
            )
            late = Counter(v for t, v in traffic.started if t > switched)
            assert set(late) == {"iris-v1"}, late
        assert traffic.failures == 0

        ready = next(c for c in md["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "RolledBack"
        assert md["lastAnalysis"]["verdict"] == "Fail"
        assert md["lastAnalysis"]["p99Ms"] > P99_SLO_MS
        assert md["traffic"].get("canary", 0) == 0 and md["stable"]["version"] == "iris-v1"
        # Events are posted after the status write they follow.
        (rolled_back,) = await eventually(
            lambda: events(cluster, "RolledBack"), what="the RolledBack Event"
        )
        assert str(P99_SLO_MS) in rolled_back["message"]

        canary_seen = [r for r in stats["retired"] if r["version"] == "iris-v2"] or [
            v for v in stats["variants"].values() if v["version"] == "iris-v2"
        ]
        assert canary_seen and canary_seen[0]["requests"] >= md["lastAnalysis"]["requests"]
        # The canary's server is removed: its Deployment, and so its process.
        await eventually(
            lambda: ("default", "iris-iris-v2-pod") not in kubelet.pods, what="v2 pod stopped"
        )
