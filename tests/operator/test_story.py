"""The whole story on the emulated API server, with the real operator (kopf) in-process:

Dataset + TrainingJob → Job (kubelet finishes it with a termination message) →
TrainingJob Succeeded → ModelDeployment → servers, router, routes pushed → a new model →
canary steps → operator restart mid-rollout (resumes, repeats nothing) → promote →
router stats breach the latency SLO → rollback at the first analysis, Event + reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from pilotage.operator import names
from pilotage.operator.pss import pod_spec_of
from pilotage.operator.rbac import RULES, missing_rules
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import eventually
from tests.operator.emulator import Cluster
from tests.operator.harness import (
    FakeRouterAdmin,
    apply_crds,
    cluster_call,
    events,
    finish_job,
    operator,
    running_kubelet,
    status,
)
from tests.operator.manifests import (
    BASE,
    NS,
    dataset,
    drift_monitor,
    model_deployment,
    summary,
    training_job,
)
from tests.operator.validation import problems
from tests.support.procs import free_port

pytestmark = pytest.mark.xdist_group("operator-story")


async def test_full_story(cluster: Cluster, tmp_path: Path) -> None:
    await apply_crds(cluster)
    admin_port = free_port()
    settings = OperatorSettings(
        standalone=True,
        liveness_port=None,
        artifact_uri="pvc://artifacts/pilotage",
        router_admin_port=admin_port,
        resync_seconds=5,
        min_interval_seconds=0.05,
        # the router admin API is served by this test's own event loop, which also runs
        # the emulated API server: on a loaded machine 2 s (the default) timed it out
        http_timeout_seconds=15,
    )
    router = FakeRouterAdmin(cluster, NS, "iris")
    api_calls: set[tuple[str, str, str]] = set()
    async with router.serving(admin_port), running_kubelet(cluster):
        async with operator(cluster, settings) as app:
            # ---- Dataset: a profiling Job, finished by the kubelet -----------------------
            await cluster_call(cluster, "POST", f"{BASE}/datasets", dataset())
            run = await eventually(
                lambda: status(cluster, "datasets", "iris").get("run"), what="profiling run named"
            )
            await eventually(lambda: cluster.get("batch/v1/jobs", NS, run), what="profiling Job")
            await finish_job(
                cluster, NS, run, {"rows": 150, "columns": 5, "fingerprint": "ab" * 32}
            )
            await eventually(
                lambda: status(cluster, "datasets", "iris").get("phase") == "Ready",
                what="Dataset Ready",
            )

            # ---- TrainingJob v1: the Job's spec, the termination message --------------
            await cluster_call(cluster, "POST", f"{BASE}/trainingjobs", training_job("iris-v1"))
            run1 = await eventually(
                lambda: status(cluster, "trainingjobs", "iris-v1").get("run"),
                what="training run named",
            )
            job = await eventually(
                lambda: cluster.get("batch/v1/jobs", NS, run1), what="training Job"
            )
            container = job["spec"]["template"]["spec"]["containers"][0]
            assert container["args"][:3] == ["train", "-f", "/config/manifests.yaml"]
            assert container["args"][3] == "--output"
            assert container["terminationMessagePath"] == "/dev/termination-log"
            assert job["spec"]["activeDeadlineSeconds"] == 900
            assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
            manifests = cluster.get("v1/configmaps", NS, names.manifests_configmap_name(run1))
            assert manifests is not None
            kinds = [d["kind"] for d in yaml.safe_load_all(manifests["data"]["manifests.yaml"])]
            assert sorted(kinds) == ["Dataset", "TrainingJob"]
            await finish_job(cluster, NS, run1, summary("iris-v1"))
            tj = await eventually(
                lambda: (
                    status(cluster, "trainingjobs", "iris-v1").get("phase") == "Succeeded"
                    and status(cluster, "trainingjobs", "iris-v1")
                ),
                what="TrainingJob Succeeded",
            )
            assert tj["metrics"]["accuracy"] == 0.95 and tj["gates"]["passed"] is True
            assert tj["modelUri"].endswith("iris-v1")
            assert "kopf" not in tj, "kopf keeps its state in annotations, not in status"

            # ---- ModelDeployment: servers, router, routes --------------------------------
            await cluster_call(cluster, "POST", f"{BASE}/modeldeployments", model_deployment())
            await eventually(
                lambda: status(cluster, "modeldeployments", "iris").get("phase") == "Healthy",
                what="ModelDeployment Healthy on v1",
            )
            for kind, name in (
                ("apps/v1/deployments", "iris-iris-v1"),
                ("v1/services", "iris-iris-v1"),
                ("apps/v1/deployments", "iris-router"),
                ("v1/services", "iris-router"),
                ("v1/configmaps", "iris-routes"),
                ("v1/secrets", "iris-router-admin"),
            ):
                assert cluster.get(kind, NS, name) is not None, (kind, name)
            assert router.tables and router.tables[-1]["variants"][0]["weight"] == 100
            assert router.rejected == 0 and router.refused == []
            md = status(cluster, "modeldeployments", "iris")
            assert md["stable"]["version"] == "iris-v1"
            assert md["endpoint"] == f"http://iris-router.{NS}.svc:8080"

            # ---- a new model: canary to 20 %, then a manual pause ------------------------
            await cluster_call(cluster, "POST", f"{BASE}/trainingjobs", training_job("iris-v2"))
            run2 = await eventually(
                lambda: status(cluster, "trainingjobs", "iris-v2").get("run"),
                what="v2 training run",
            )
            await eventually(lambda: cluster.get("batch/v1/jobs", NS, run2), what="v2 Job")
            await finish_job(cluster, NS, run2, summary("iris-v2"))
            await eventually(
                lambda: status(cluster, "modeldeployments", "iris").get("phase") == "Paused",
                what="canary paused at 20 %",
            )
            md = status(cluster, "modeldeployments", "iris")
            assert md["traffic"] == {"stable": 80, "canary": 20}
            assert cluster.get("apps/v1/deployments", NS, "iris-iris-v2") is not None
            await eventually(
                lambda: (
                    router.tables[-1]["revision"]
                    and {v["name"]: v["weight"] for v in router.tables[-1]["variants"]}
                    == {"stable": 80, "canary": 20}
                ),
                what="the router got the 80/20 table",
            )
            router.add_requests("canary", "iris-v2", 50, 0.004)
            api_calls |= app.kube.calls

        # ---- restart mid-rollout: resume from status, repeat nothing ---------------------
        jobs_before = {j["metadata"]["name"] for j in cluster.list("batch/v1/jobs", NS)}
        steps_before = len(events(cluster, "StepReached"))
        step_before = status(cluster, "modeldeployments", "iris")["currentStep"]
        last_time = (status(cluster, "modeldeployments", "iris").get("lastAnalysis") or {}).get(
            "time"
        )
        async with operator(cluster, settings) as app:
            await eventually(
                lambda: (
                    (status(cluster, "modeldeployments", "iris").get("lastAnalysis") or {}).get(
                        "time"
                    )
                    not in (None, last_time)
                ),
                what="an analysis after the restart",
            )
            md = status(cluster, "modeldeployments", "iris")
            assert md["phase"] == "Paused" and md["currentStep"] == step_before
            assert len(events(cluster, "StepReached")) == steps_before
            assert {j["metadata"]["name"] for j in cluster.list("batch/v1/jobs", NS)} == jobs_before
            assert status(cluster, "trainingjobs", "iris-v2")["attempts"] == 1

            # ---- promote: 50 %, then the canary's latency breaches the SLO --------------
            await cluster_call(
                cluster,
                "PATCH",
                f"{BASE}/modeldeployments/iris",
                {"metadata": {"annotations": {"pilotage.dev/promote": "1"}}},
            )
            await eventually(
                lambda: (
                    status(cluster, "modeldeployments", "iris").get("traffic")
                    == {"stable": 50, "canary": 50}
                ),
                what="canary at 50 %",
            )

            async def slow_canary() -> None:
                while True:
                    router.add_requests("canary", "iris-v2", 20, 0.2)
                    await asyncio.sleep(0.05)

            feeder = asyncio.create_task(slow_canary())
            try:
                md = await eventually(
                    lambda: (
                        status(cluster, "modeldeployments", "iris").get("phase") == "Degraded"
                        and status(cluster, "modeldeployments", "iris")
                    ),
                    what="rolled back",
                )
            finally:
                feeder.cancel()

            # ---- a DriftMonitor's manual retrain annotation creates a TrainingJob ----------
            await cluster_call(cluster, "POST", f"{BASE}/driftmonitors", drift_monitor())
            await cluster_call(
                cluster,
                "PATCH",
                f"{BASE}/driftmonitors/iris-drift",
                {"metadata": {"annotations": {"pilotage.dev/retrain": "now"}}},
            )
            retrain = await eventually(
                lambda: next(
                    (
                        t
                        for t in cluster.list("pilotage.dev/v1alpha1/trainingjobs", NS)
                        if t["metadata"]["labels"].get("pilotage.dev/monitor") == "iris-drift"
                    ),
                    None,
                ),
                what="a retrain TrainingJob",
            )
            assert retrain["metadata"]["labels"]["app"] == "iris"
            assert retrain["metadata"]["ownerReferences"][0]["kind"] == "DriftMonitor"
            api_calls |= app.kube.calls
        ready = next(c for c in md["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "RolledBack"
        assert md["traffic"].get("canary", 0) == 0 and md["stable"]["version"] == "iris-v1"
        assert md["lastAnalysis"]["verdict"] == "Fail" and md["lastAnalysis"]["failures"] == 1
        assert md["lastAnalysis"]["p99Ms"] > 50
        assert md["history"][-1]["action"] == "RolledBack"
        # Events are posted after the status write they follow.
        (rolled_back,) = await eventually(
            lambda: events(cluster, "RolledBack"), what="the RolledBack Event"
        )
        assert rolled_back["type"] == "Warning" and "50" in rolled_back["message"]
        await eventually(
            lambda: (
                {v["name"]: v["weight"] for v in router.tables[-1]["variants"]}.get("canary", 0)
                == 0
            ),
            what="the router got the rollback table",
        )

    # ---- every object the operator created: schema, restricted PSS, owned ---------------
    created = [
        *cluster.list("batch/v1/jobs", NS),
        *cluster.list("apps/v1/deployments", NS),
        *cluster.list("v1/services", NS),
        *cluster.list("v1/configmaps", NS),
        *cluster.list("v1/secrets", NS),
        *cluster.list("v1/events", NS),
    ]
    assert len(created) > 10
    for obj in created:
        obj = {k: v for k, v in obj.items() if k != "status"}
        obj["metadata"] = {
            k: v
            for k, v in obj["metadata"].items()
            if k
            in ("name", "namespace", "labels", "annotations", "ownerReferences", "generateName")
        }
        assert problems(obj) == [], obj["metadata"]["name"]
        if obj["kind"] != "Event":
            assert obj["metadata"]["ownerReferences"], obj["metadata"]["name"]
        if pod_spec_of(obj) is not None:
            assert obj["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGER
    assert api_calls <= cluster.api_calls(("OpenAPI-Generator",)), "Kube.calls records every call"
    seen = cluster.api_calls(("kopf/", "OpenAPI-Generator"))
    assert missing_rules(seen) == [], f"rbac.RULES lacks calls the operator made: {RULES}"
