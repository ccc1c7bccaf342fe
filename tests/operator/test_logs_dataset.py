"""A `logs://iris` Dataset without a sink on the emulated API server, with the real operator
(kopf) in-process: it says that no ModelDeployment iris exists and creates no Job; once
the ModelDeployment is applied with a `pvc://` sink, the Dataset's own requeue picks it
up: the profiling Job reads that sink (its manifests name it) and mounts the claim, and
the status names the sink its snapshot was read from."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotage.operator import names
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import eventually
from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call, events, finish_job, operator, status
from tests.operator.manifests import BASE, NS, model_deployment

pytestmark = pytest.mark.xdist_group("operator-logs-dataset")

SINK = "pvc://inference-logs/iris"


def live_dataset() -> dict[str, Any]:
    return {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris-live"},
        "spec": {"source": {"uri": "logs://iris"}},
    }


def ready_condition(cluster: Cluster) -> dict[str, Any]:
    conditions = status(cluster, "datasets", "iris-live").get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


async def test_a_logs_dataset_reads_the_sink_of_its_deployment_once_it_exists(
    cluster: Cluster,
) -> None:
    await apply_crds(cluster)
    settings = OperatorSettings(
        standalone=True,
        liveness_port=None,
        artifact_uri="pvc://artifacts/pilotage",
        min_interval_seconds=0.05,
    )
    async with operator(cluster, settings):
        await cluster_call(cluster, "POST", f"{BASE}/datasets", live_dataset())
        waiting = await eventually(
            lambda: (
                ready_condition(cluster).get("reason") == "LogsNotFound"
                and ready_condition(cluster)
            ),
            what="the Dataset says its deployment is missing",
        )
        assert "no ModelDeployment 'iris'" in waiting["message"]
        assert status(cluster, "datasets", "iris-live")["phase"] == "Failed"
        assert not cluster.list("batch/v1/jobs", NS)
        # The operator writes the status first, then records the Event.
        (event,) = await eventually(
            lambda: events(cluster, "LogsNotFound"), what="the LogsNotFound Event"
        )
        assert event["message"] == waiting["message"] and event["type"] == "Warning"

        # No model yet (no TrainingJob matches): only its logging matters to the Dataset.
        md = model_deployment(logging={"sampleRate": 1.0, "sink": {"uri": SINK}})
        await cluster_call(cluster, "POST", f"{BASE}/modeldeployments", md)
        run = await eventually(
            lambda: status(cluster, "datasets", "iris-live").get("run"),
            timeout=30,
            what="the profiling run started by the Dataset's requeue",
        )
        job = await eventually(lambda: cluster.get("batch/v1/jobs", NS, run), what="profiling Job")
        pod = job["spec"]["template"]["spec"]
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert "inference-logs" in claims
        configmap = cluster.get("v1/configmaps", NS, names.manifests_configmap_name(run))
        assert configmap is not None
        (manifest,) = yaml.safe_load_all(configmap["data"]["manifests.yaml"])
        assert manifest["spec"]["source"]["uri"] == "logs://iris"
        assert manifest["spec"]["source"]["inferenceLogs"]["sink"] == SINK
        # The Dataset's spec is left as the user wrote it.
        stored = cluster.get("pilotage.dev/v1alpha1/datasets", NS, "iris-live")
        assert stored is not None and stored["spec"]["source"] == {"uri": "logs://iris"}

        snapshot = {"uri": f"pvc://artifacts/pilotage/{NS}/datasets/iris-live/{run}/snapshot.parquet",
                    "rows": 30, "loggedRows": 30, "labelledRows": 30, "sink": SINK}  # fmt: skip
        summary = {"rows": 30, "columns": 5, "fingerprint": "cd" * 32, "snapshot": snapshot}
        await finish_job(cluster, NS, run, summary)
        done = await eventually(
            lambda: (
                status(cluster, "datasets", "iris-live").get("phase") == "Ready"
                and status(cluster, "datasets", "iris-live")
            ),
            what="Dataset Ready",
        )
        assert done["snapshot"]["sink"] == SINK
