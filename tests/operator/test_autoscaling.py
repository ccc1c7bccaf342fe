"""Autoscaling through the real operator (kopf in-process, emulated API server and
kubelet, a fake router admin API that reports load): the variant's Deployment gets the
replicas the autoscaler decides, goes to zero when idle with the routing table naming
no replica, and comes back for a held request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pilotage.control.common import STEADY_POLL_SECONDS
from pilotage.operator.handlers import ACTIVATION_BACKOFF_SECONDS
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import eventually
from tests.operator.emulator import Cluster
from tests.operator.harness import FakeRouterAdmin, cluster_call, events, server_pods_of, status
from tests.operator.manifests import BASE, NS
from tests.operator.test_strategies import serving_v1

pytestmark = pytest.mark.xdist_group("operator-strategies")

AUTOSCALING = {
    "minReplicas": 0,
    "maxReplicas": 4,
    "target": {"inFlight": 2},
    "interval": "500ms",
    "window": "2s",
    "panicWindow": "1s",
    "scaleDownDelay": "1s",
    "scaleToZeroAfter": "3s",
}


def replicas(cluster: Cluster) -> int | None:
    dep = cluster.get("apps/v1/deployments", NS, "iris-iris-v1")
    return None if dep is None else int(dep["spec"]["replicas"])


def stable_entry(table: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in table["variants"] if v["name"] == "stable")


async def test_replicas_follow_load_to_zero_and_back(cluster: Cluster) -> None:
    strategy = {"type": "Canary"}
    async with serving_v1(cluster, strategy, {"interval": "1s"}, autoscaling=AUTOSCALING) as router:
        assert router.tables[-1]["activation"] == {"timeoutSeconds": 30.0, "maxHeld": 1000}
        # 5 requests in flight, 2 per replica: 3 replicas (not on a boundary, where the
        # sampling's jitter would flip between 3 and 4)
        router.concurrency[("stable", "iris-v1")] = 5
        await eventually(lambda: replicas(cluster) == 3, what="the Deployment at 3 replicas")
        await eventually(
            lambda: (
                status(cluster, "modeldeployments", "iris").get("replicasSummary") == "stable 3/3"
            ),
            what="status.replicas 3/3",
        )
        await eventually(lambda: events(cluster, "ScaledUp"), what="a ScaledUp Event")

        # idle: down to zero; the routing table then names no replica for stable
        router.concurrency[("stable", "iris-v1")] = 0
        await eventually(lambda: replicas(cluster) == 0, what="the Deployment at zero")
        await eventually(
            lambda: stable_entry(router.tables[-1]).get("urls") == [],
            what="a table with no replica for stable",
        )
        await eventually(lambda: events(cluster, "ScaledToZero"), what="a ScaledToZero Event")
        assert status(cluster, "modeldeployments", "iris")["phase"] == "Healthy"

        # a request held at zero: one replica again, and the table names it. The request
        # stays held until a replica is routed, as in the router; letting it go earlier
        # left the variant idle again, and on a loaded machine it went back to zero
        # before the routed table could be seen.
        router.held["stable"] = 1
        await eventually(lambda: replicas(cluster) == 1, what="woken to one replica")
        await eventually(
            lambda: "url" in stable_entry(router.tables[-1]), what="the ready replica routed"
        )
        router.held["stable"] = 0
        await eventually(lambda: events(cluster, "Activated"), what="an Activated Event")


def stable_urls(router: FakeRouterAdmin) -> list[str]:
    """The replicas the last table gives stable (`url` for one, `urls` for several)."""
    entry = stable_entry(router.tables[-1])
    return [entry["url"]] if "url" in entry else sorted(entry["urls"])


def pod_urls(cluster: Cluster) -> list[str]:
    port = OperatorSettings().server_port
    return sorted(
        f"http://{p['status']['podIP']}:{port}"
        for p in server_pods_of(cluster, "iris-iris-v1")
        if p.get("status", {}).get("conditions", [{}])[0].get("status") == "True"
    )


async def test_the_table_names_each_ready_server_pod(cluster: Cluster) -> None:
    """With autoscaling the router balances over the variant's pods itself: the table
    names each ready server pod's address (not the Service), and a pod that stops being
    ready, or is deleted and replaced, leaves the table at the next push."""
    async with serving_v1(
        cluster, {"type": "Canary"}, {"interval": "1s"}, autoscaling=AUTOSCALING
    ) as router:
        router.concurrency[("stable", "iris-v1")] = 5
        await eventually(lambda: replicas(cluster) == 3, what="the Deployment at 3 replicas")
        await eventually(
            lambda: len(pod_urls(cluster)) == 3 and stable_urls(router) == pod_urls(cluster),
            what="the table naming the 3 ready pods",
        )
        assert all(f":{OperatorSettings().server_port}" in u for u in stable_urls(router))
        assert not any(".svc" in u for u in stable_urls(router))

        # one pod is no longer ready: the table drops it
        first, second = sorted(
            server_pods_of(cluster, "iris-iris-v1"), key=lambda p: p["metadata"]["name"]
        )[:2]
        await cluster_call(
            cluster,
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/{first['metadata']['name']}/status",
            {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        )
        unready = f"http://{first['status']['podIP']}:{OperatorSettings().server_port}"
        await eventually(
            lambda: len(stable_urls(router)) == 2 and unready not in stable_urls(router),
            what="the unready pod out of the table",
        )

        # another is deleted: the kubelet replaces it at a new address, which the table
        # names instead of the deleted one
        deleted = f"http://{second['status']['podIP']}:{OperatorSettings().server_port}"
        await cluster_call(
            cluster, "DELETE", f"/api/v1/namespaces/{NS}/pods/{second['metadata']['name']}"
        )
        await eventually(
            lambda: (
                deleted not in stable_urls(router)
                and unready not in stable_urls(router)
                and stable_urls(router) == pod_urls(cluster)
                and len(stable_urls(router)) == 2
            ),
            what="the deleted pod replaced in the table",
        )


def md(cluster: Cluster) -> dict[str, Any]:
    return cluster.get("pilotage.dev/v1alpha1/modeldeployments", NS, "iris") or {}


def observed(cluster: Cluster) -> bool:
    """The last spec change has been reconciled."""
    body = md(cluster)
    return (body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"]


async def patch_autoscaling(cluster: Cluster, autoscaling: dict[str, Any] | None) -> None:
    await cluster_call(
        cluster,
        "PATCH",
        f"{BASE}/modeldeployments/iris",
        {"spec": {"autoscaling": autoscaling}},
    )
    await eventually(lambda: observed(cluster), what="the spec change reconciled")


# The decision interval and the resync: far beyond any deadline below.
LONG = "600s"
# A healthy deployment is reconciled every STEADY_POLL_SECONDS whatever its interval:
# the wake must come well before that tick (it takes under a second).
WAKE_DEADLINE = STEADY_POLL_SECONDS / 3


async def test_a_held_request_wakes_the_deployment_at_once(cluster: Cluster) -> None:
    """A request held at zero reconciles the deployment at once through the operator's
    long poll on the router (`GET /admin/activations`), not at its next timer tick: the
    decision interval and the resync are 600 s, a healthy deployment's steady poll is
    30 s, and the replica comes well before either. The long poll stops when the
    deployment no longer scales to zero."""
    async with serving_v1(
        cluster, {"type": "Canary"}, {"interval": LONG}, resync_seconds=600, autoscaling=AUTOSCALING
    ) as router:
        await eventually(lambda: replicas(cluster) == 0, what="the Deployment at zero")
        await eventually(
            lambda: stable_entry(router.tables[-1]).get("urls") == [],
            what="a table with no replica for stable",
        )
        await eventually(lambda: router.open_polls > 0, what="the operator's long poll open")
        await patch_autoscaling(cluster, {"interval": LONG})
        assert replicas(cluster) == 0

        asked = time.monotonic()
        router.held["stable"] = 1
        await eventually(
            lambda: replicas(cluster) == 1, timeout=WAKE_DEADLINE, what="woken to one replica"
        )
        woken = time.monotonic() - asked
        await eventually(
            lambda: "url" in stable_entry(router.tables[-1]), what="the ready replica routed"
        )
        router.held["stable"] = 0
        await eventually(lambda: events(cluster, "Activated"), what="an Activated Event")
        print(f"woken {woken:.2f} s after the request was held (interval and resync: {LONG})")

        # without scale to zero there is nothing to wake: the long poll ends
        await patch_autoscaling(cluster, {"minReplicas": 1})
        router.release()
        await eventually(lambda: router.open_polls == 0, what="no long poll open")
        polls = router.activation_polls
        router.held["stable"] = 1  # a live poll would answer at once, and poll again
        deadline = time.monotonic() + 3 * ACTIVATION_BACKOFF_SECONDS[0] * 2
        while time.monotonic() < deadline:
            assert router.activation_polls == polls, "the long poll goes on without scale to zero"
            await asyncio.sleep(0.05)
        router.held["stable"] = 0
