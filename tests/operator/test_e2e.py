"""`pilotage operator` as a real process, reaching the emulated API server through a
kubeconfig with a bearer token (the emulator refuses requests without it), and the Jobs'
containers (`pilotage profile`, `pilotage train`) really run: Dataset → profiling Job →
Ready; TrainingJob → training Job with the right spec → a real ONNX model →
TrainingJob Succeeded; SIGTERM → exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from pathlib import Path

import kmock
import pytest

from pilotage.operator import names
from pilotage.operator.rbac import missing_rules
from tests.operator.conftest import api_url, eventually
from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call, events, status, write_kubeconfig
from tests.operator.kubelet import ProcessKubelet
from tests.operator.manifests import BASE, NS, dataset, training_job
from tests.operator.validation import problems
from tests.support.procs import Process, free_port, pilotage

pytestmark = pytest.mark.xdist_group("operator-e2e")

TRAINER_IMAGE = "registry.example/pilotage-trainer:e2e"


async def test_operator_process_runs_training_and_stops_on_sigterm(tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    async with Cluster(token=token) as cluster, kmock.Server(cluster, host="127.0.0.1"):
        await apply_crds(cluster)
        liveness = free_port()
        env = {
            "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", api_url(cluster), token)),
            "PILOTAGE_STANDALONE": "true",
            "PILOTAGE_LIVENESS_PORT": str(liveness),
            "PILOTAGE_ARTIFACT_URI": "pvc://artifacts/pilotage",
            "PILOTAGE_TRAINER_IMAGE": TRAINER_IMAGE,
            "PILOTAGE_RESYNC_SECONDS": "5",
            "PILOTAGE_MIN_INTERVAL_SECONDS": "0.05",
        }
        proc = Process(pilotage("operator"), tmp_path / "operator.log", env)
        kubelet = ProcessKubelet(cluster, tmp_path / "pods", tmp_path / "pvc")
        try:
            await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{liveness}/healthz", 60)

            # ---- Dataset: the profiling Job's container really runs ------------------------
            await cluster_call(cluster, "POST", f"{BASE}/datasets", dataset())
            run = await eventually(
                lambda: status(cluster, "datasets", "iris").get("run"), what="profiling run"
            )
            await eventually(lambda: cluster.get("batch/v1/jobs", NS, run), what="profiling Job")
            code, profile = await kubelet.run_job(NS, run)
            assert code == 0 and profile["rows"] == 150, profile
            ds = await eventually(
                lambda: (
                    status(cluster, "datasets", "iris").get("phase") == "Ready"
                    and status(cluster, "datasets", "iris")
                ),
                what="Dataset Ready",
            )
            assert ds["fingerprint"] == profile["fingerprint"]

            # ---- TrainingJob: the Job's spec, then a real training run ----------------------
            await cluster_call(cluster, "POST", f"{BASE}/trainingjobs", training_job("iris-v1"))
            run1 = await eventually(
                lambda: status(cluster, "trainingjobs", "iris-v1").get("run"), what="training run"
            )
            job = await eventually(
                lambda: cluster.get("batch/v1/jobs", NS, run1), what="training Job"
            )
            pod_spec = job["spec"]["template"]["spec"]
            (container,) = pod_spec["containers"]
            assert container["image"] == TRAINER_IMAGE
            assert container["command"] == ["pilotage"]
            assert container["args"][:4] == ["train", "-f", "/config/manifests.yaml", "--output"]
            output = container["args"][4]
            assert output.startswith("pvc://artifacts/pilotage/")
            assert {"name": "PILOTAGE_PVC_ROOT", "value": "/mnt/pvc"} in container["env"]
            assert job["spec"]["activeDeadlineSeconds"] == 900
            assert job["spec"]["backoffLimit"] == 0
            owner = job["metadata"]["ownerReferences"][0]
            assert owner["kind"] == "TrainingJob" and owner["controller"] is True
            assert (
                owner["uid"]
                == cluster.get("pilotage.dev/v1alpha1/trainingjobs", NS, "iris-v1")["metadata"][
                    "uid"
                ]
            )
            assert job["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGER
            assert problems({k: v for k, v in job.items() if k != "status"}) == []

            code, summary = await kubelet.run_job(NS, run1)
            assert code == 0 and summary["phase"] == "Succeeded", summary
            tj = await eventually(
                lambda: (
                    status(cluster, "trainingjobs", "iris-v1").get("phase") == "Succeeded"
                    and status(cluster, "trainingjobs", "iris-v1")
                ),
                what="TrainingJob Succeeded",
            )
            assert tj["modelUri"] == summary["modelUri"] == output
            assert tj["metrics"]["accuracy"] == summary["metrics"]["accuracy"] >= 0.8
            assert tj["gates"]["passed"] is True
            card = tmp_path / "pvc" / output.removeprefix("pvc://") / "model.json"
            assert json.loads(card.read_text())["version"] == tj["modelVersion"]
            # Events follow the status write.
            succeeded = await eventually(
                lambda: events(cluster, "TrainingSucceeded"), what="TrainingSucceeded Event"
            )
            assert [e["type"] for e in succeeded] == ["Normal"]

            # ---- SIGTERM: a clean, quick stop ------------------------------------------------
            started = time.monotonic()
            os.killpg(proc.pid, signal.SIGTERM)
            code = await asyncio.to_thread(proc.popen.wait, 60)
            stopped_in = time.monotonic() - started
            assert code == 0, proc.log()[-3000:]
        finally:
            await asyncio.to_thread(proc.stop)
    log = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    print(f"operator stopped {stopped_in:.2f}s after SIGTERM")
    # Every request of kopf and of the kubernetes client carried the kubeconfig's token.
    assert cluster.unauthorized == []
    seen = cluster.api_calls(("kopf/", "OpenAPI-Generator"))
    assert ("pilotage.dev", "trainingjobs/status", "patch") in seen
    assert ("batch", "jobs", "create") in seen
    assert missing_rules(seen) == []
