"""Manual controls and the other strategies through the real operator (kopf in-process),
with a fake router admin API that records every table pushed: `pilotage.dev/abort` and
`pilotage.dev/retry` on a canary, a BlueGreen rollout (preview, auto-promotion, the old
version scaled down after the delay) and a Shadow rollout (mirroring table, comparison
judged, promoted)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pilotage.control.common import parse_time
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import DEADLINE, eventually
from tests.operator.emulator import Cluster
from tests.operator.harness import (
    FakeRouterAdmin,
    apply_crds,
    cluster_call,
    events,
    operator,
    ready_dataset,
    running_kubelet,
    status,
    trained,
)
from tests.operator.manifests import BASE, NS, model_deployment
from tests.support.procs import free_port

pytestmark = pytest.mark.xdist_group("operator-strategies")


def md_status(cluster: Cluster) -> dict[str, Any]:
    return status(cluster, "modeldeployments", "iris")


def variants(table: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(v["name"], v["version"], v["weight"]) for v in table["variants"]]


async def gone_at(cluster: Cluster, resource: str, name: str) -> float:
    """The wall-clock time at which `name` was first seen gone (polled every 20 ms)."""
    while cluster.get(resource, NS, name) is not None:
        await asyncio.sleep(0.02)
    return time.time()


async def annotate(cluster: Cluster, key: str, value: str) -> None:
    await cluster_call(
        cluster,
        "PATCH",
        f"{BASE}/modeldeployments/iris",
        {"metadata": {"annotations": {key: value}}},
    )


@contextlib.asynccontextmanager
async def serving_v1(
    cluster: Cluster,
    strategy: dict[str, Any],
    analysis: dict[str, Any],
    resync_seconds: float = 1,
    **spec: Any,
) -> AsyncIterator[FakeRouterAdmin]:
    """Operator, kubelet and router admin running; iris-v1 deployed and Healthy.
    ``resync_seconds``: the longest a resource's timer sleeps."""
    await apply_crds(cluster)
    admin_port = free_port()
    settings = OperatorSettings(
        standalone=True,
        liveness_port=None,
        artifact_uri="pvc://artifacts/pilotage",
        router_admin_port=admin_port,
        # a new TrainingJob reaches the deployment at its next resync
        resync_seconds=resync_seconds,
        min_interval_seconds=0.05,
        # the router admin API is served by this test's own event loop, which also runs
        # the emulated API server: on a loaded machine 2 s (the default) timed it out
        http_timeout_seconds=15,
    )
    router = FakeRouterAdmin(cluster, NS, "iris")
    # autoscaled variants are routed pod by pod: the kubelet runs their server pods
    kubelet = running_kubelet(cluster, server_pods="autoscaling" in spec)
    async with router.serving(admin_port), kubelet, operator(cluster, settings):
        await ready_dataset(cluster)
        await trained(cluster, "iris-v1")
        md = model_deployment(strategy, analysis, **spec)
        await cluster_call(cluster, "POST", f"{BASE}/modeldeployments", md)
        await eventually(
            lambda: md_status(cluster).get("phase") == "Healthy" and router.tables,
            what="Healthy on v1",
        )
        yield router
    assert router.rejected == 0
    assert router.refused == [], "every table pushed must be one the real router accepts"


async def test_abort_then_retry_a_canary(cluster: Cluster) -> None:
    strategy = {"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
    async with serving_v1(cluster, strategy, {"interval": "1s"}) as router:
        await trained(cluster, "iris-v2")
        await eventually(
            lambda: (
                md_status(cluster).get("phase") == "Paused"
                and router.weights() == {"stable": 80, "canary": 20}
            ),
            what="canary paused at 20 % and pushed",
        )
        assert variants(router.tables[-1]) == [("stable", "iris-v1", 80), ("canary", "iris-v2", 20)]

        # ---- abort: the canary's traffic to 0, the version rejected -------------------
        await annotate(cluster, "pilotage.dev/abort", "a1")
        md = await eventually(
            lambda: md_status(cluster).get("phase") == "Degraded" and md_status(cluster),
            what="aborted",
        )
        ready = next(c for c in md["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "Aborted"
        assert md["rejectedVersion"] == "iris-v2" and md["stable"]["version"] == "iris-v1"
        assert md["traffic"].get("canary", 0) == 0
        assert md["history"][-1]["action"] == "Aborted"
        assert md["handledActions"]["pilotage.dev/abort"] == "a1"
        await eventually(lambda: events(cluster, "Aborted"), what="Aborted Event")
        await eventually(
            lambda: router.weights().get("canary", 0) == 0, what="the abort table pushed"
        )
        assert router.tables[-1]["variants"][0]["version"] == "iris-v1"
        await eventually(
            lambda: cluster.get("apps/v1/deployments", NS, "iris-iris-v2") is None,
            what="the aborted version's server removed",
        )
        pushed = len(router.tables)

        # The same value again is not a new request.
        await annotate(cluster, "pilotage.dev/abort", "a1")
        await annotate(cluster, "pilotage.dev/retry", "r1")

        # ---- retry: the rejected version rolls out again, from the first step ----------
        await eventually(
            lambda: (
                md_status(cluster).get("phase") == "Paused"
                and router.weights() == {"stable": 80, "canary": 20}
            ),
            what="the canary again at 20 % after retry",
        )
        md = md_status(cluster)
        assert md.get("rejectedVersion") is None
        assert md["candidate"]["version"] == "iris-v2"
        assert md["handledActions"]["pilotage.dev/retry"] == "r1"
        assert len(router.tables) > pushed
        assert cluster.get("apps/v1/deployments", NS, "iris-iris-v2") is not None
        assert len(events(cluster, "Aborted")) == 1


async def test_blue_green_preview_auto_promotion_and_scale_down(cluster: Cluster) -> None:
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {"autoPromotionSeconds": 1, "scaleDownDelaySeconds": 2},
    }
    async with serving_v1(cluster, strategy, {"interval": "1s"}) as router:
        assert router.tables[-1]["mode"] == "bluegreen"
        v1_gone_at = asyncio.create_task(gone_at(cluster, "apps/v1/deployments", "iris-iris-v1"))
        await trained(cluster, "iris-v2")
        # The preview: the new version in the table with 0 %, reachable by header only.
        preview = await eventually(
            lambda: next((t for t in router.tables if len(t["variants"]) == 2), None),
            what="the preview table",
        )
        assert preview["mode"] == "bluegreen"
        assert variants(preview) == [("stable", "iris-v1", 100), ("preview", "iris-v2", 0)]

        # Auto-promotion: the switch, the old version kept until scaleDownAt.
        md = await eventually(
            lambda: (
                (md_status(cluster).get("stable") or {}).get("version") == "iris-v2"
                and md_status(cluster)
            ),
            what="promoted to v2",
        )
        assert md["previous"]["version"] == "iris-v1" and md["scaleDownAt"]
        assert md["history"][-1]["action"] == "Promoted"
        scale_down_at = parse_time(md["scaleDownAt"])
        assert scale_down_at is not None
        await eventually(
            lambda: variants(router.tables[-1]) == [("stable", "iris-v2", 100)],
            what="the switched table pushed",
        )
        assert router.tables[-1]["mode"] == "bluegreen"

        # The old version's server is kept until scaleDownAt, then goes. (Checking that it
        # still exists right after seeing the promotion raced the 2 s delay on a loaded
        # machine; the watcher's time of its deletion is never earlier than the truth.)
        removed = await asyncio.wait_for(v1_gone_at, DEADLINE)
        assert removed >= scale_down_at.timestamp(), (removed, md["scaleDownAt"])
        # The Service is deleted right after the Deployment, by a second API call.
        await eventually(
            lambda: cluster.get("v1/services", NS, "iris-iris-v1") is None, what="v1's Service"
        )
        await eventually(lambda: md_status(cluster).get("previous") is None, what="previous")
        await eventually(
            lambda: any(
                "previous version iris-v1 scaled down" in e.get("message", "")
                for e in events(cluster, "ScaledDown")
            ),
            what="the ScaledDown Event",
        )
        assert md_status(cluster)["phase"] == "Healthy"


async def test_blue_green_abort_within_the_delay_switches_back(cluster: Cluster) -> None:
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {"autoPromotionSeconds": 0, "scaleDownDelaySeconds": 600},
    }
    async with serving_v1(cluster, strategy, {"interval": "1s"}) as router:
        await trained(cluster, "iris-v2")
        await eventually(
            lambda: (md_status(cluster).get("previous") or {}).get("version") == "iris-v1",
            what="promoted to v2 with v1 kept as previous",
        )
        await eventually(
            lambda: variants(router.tables[-1]) == [("stable", "iris-v2", 100)],
            what="the switched table pushed",
        )
        await annotate(cluster, "pilotage.dev/abort", "back")
        md = await eventually(
            lambda: (
                (md_status(cluster).get("stable") or {}).get("version") == "iris-v1"
                and md_status(cluster)
            ),
            what="switched back to v1",
        )
        assert md.get("previous") is None and md["rejectedVersion"] == "iris-v2"
        assert md["phase"] == "Degraded" and md["history"][-1]["reason"] == "SwitchedBack"
        await eventually(
            lambda: variants(router.tables[-1]) == [("stable", "iris-v1", 100)],
            what="the switch-back table pushed",
        )
        await eventually(lambda: events(cluster, "SwitchedBack"), what="SwitchedBack Event")
        await eventually(
            lambda: cluster.get("apps/v1/deployments", NS, "iris-iris-v2") is None,
            what="the aborted version's server removed",
        )


async def test_shadow_mirrors_then_promotes_on_agreement(cluster: Cluster) -> None:
    strategy = {"type": "Shadow", "shadow": {"percent": 50, "duration": "1s", "promote": True}}
    analysis = {"interval": "1s", "minRequests": 5, "shadow": {"minAgreement": 0.9}}
    async with serving_v1(cluster, strategy, analysis) as router:
        await trained(cluster, "iris-v2")
        mirroring = await eventually(
            lambda: next((t for t in router.tables if t.get("shadow")), None),
            what="the mirroring table",
        )
        assert mirroring["mode"] == "shadow"
        assert variants(mirroring) == [("stable", "iris-v1", 100), ("shadow", "iris-v2", 0)]
        assert mirroring["shadow"] == {"variant": "shadow", "percent": 50}
        md = md_status(cluster)
        assert md["stable"]["version"] == "iris-v1" and md["candidate"]["version"] == "iris-v2"

        async def comparisons() -> None:
            while True:
                router.add_comparisons(agree=10)
                await asyncio.sleep(0.05)

        feeder = asyncio.create_task(comparisons())
        try:
            md = await eventually(
                lambda: (
                    (md_status(cluster).get("stable") or {}).get("version") == "iris-v2"
                    and md_status(cluster)
                ),
                what="shadow promoted",
            )
        finally:
            feeder.cancel()
        # The candidate's analysis moves into the Promoted entry (the P99ms column must
        # not show it as the new stable's).
        assert "lastAnalysis" not in md
        assert md["history"][-1]["action"] == "Promoted"
        assert "last analysis Pass (" in md["history"][-1]["message"]
        assert "agreement 1.000" in md["history"][-1]["message"]
        await eventually(
            lambda: (
                variants(router.tables[-1]) == [("stable", "iris-v2", 100)]
                and not router.tables[-1].get("shadow")
            ),
            what="the promoted table pushed",
        )


async def test_a_refused_routing_table_is_explained_in_the_status(cluster: Cluster) -> None:
    strategy = {"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
    async with serving_v1(cluster, strategy, {"interval": "1s"}) as router:
        reason = "variants: a test refuses every new table"
        router.refuse_with = reason
        await trained(cluster, "iris-v2")
        md = await eventually(
            lambda: (
                "router rejected" in md_status(cluster).get("message", "") and md_status(cluster)
            ),
            what="the refusal in the status",
        )
        assert md["message"] == f"router rejected the routing table: {reason}"
        assert md["phase"] == "Progressing" and md["candidate"]["version"] == "iris-v2"
        ready = next(c for c in md["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "RoutingTableRejected" and ready["message"] == md["message"]
        await eventually(lambda: events(cluster, "RoutingTableRejected"), what="Warning Event")
        assert router.weights() == {"stable": 100}, "the router kept its table"

        router.refuse_with = None
        await eventually(
            lambda: (
                md_status(cluster).get("phase") == "Paused"
                and router.weights() == {"stable": 80, "canary": 20}
            ),
            what="the canary table taken once the router accepts it",
        )
        assert set(router.refused) == {reason}
        router.refused.clear()
