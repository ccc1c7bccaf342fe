"""The live-data loop of issue 17 on the real control plane, driven with kubectl and HTTP
only: a ModelDeployment logs every request to a `pvc://` sink, clients send predictions
through the router's Service and ground truth through `POST /v1/feedback`, a `logs://iris`
Dataset that names the deployment only materialises the labelled requests as a snapshot
(its profiling pod mounts the claim of the deployment's sink), and a TrainingJob trains on that snapshot and names it in its status.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from sklearn.datasets import load_iris

from tests.cluster.conftest import Cluster, iris_and_v1, restricted_namespace
from tests.cluster.test_story import wait_for

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

NS = "live"
LOG_CLAIM = "inference-logs"
SINK = f"pvc://{LOG_CLAIM}/iris"
REQUESTS = 40

SERVING = (
    iris_and_v1(NS)
    + f"""
---
apiVersion: pilotage.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: iris, namespace: {NS}}}
spec:
  model:
    trainingJobSelector:
      matchLabels: {{pilotage.dev/model: iris}}
  logging:
    sampleRate: 1.0
    sink: {{uri: "{SINK}"}}
"""
)

LIVE = f"""
apiVersion: pilotage.dev/v1alpha1
kind: Dataset
metadata: {{name: iris-live, namespace: {NS}}}
spec:
  source:
    uri: logs://iris             # the sink is the ModelDeployment's
    inferenceLogs:
      window: 1h
  target: target
---
apiVersion: pilotage.dev/v1alpha1
kind: TrainingJob
metadata: {{name: iris-live-v1, namespace: {NS}}}
spec:
  datasetRef: {{name: iris-live}}
  task: classification
  model: {{algorithm: decision_tree, hyperparameters: {{max_depth: 3}}}}
"""


def _status(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    return dict(cluster.get(f"{kind}/{name}", "-n", NS).get("status") or {})


def _post(url: str, doc: Any) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        url, json.dumps(doc).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), json.loads(response.read())


def _claim(cluster: Cluster, name: str) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(claim))


def _finished(cluster: Cluster, kind: str, name: str, phases: tuple[str, ...]) -> dict[str, Any]:
    return wait_for(
        f"{kind}/{name} to reach one of {phases}",
        lambda: (s := _status(cluster, kind, name)).get("phase") in phases and s,
        describe=lambda: _status(cluster, kind, name),
    )


def test_logged_and_labelled_requests_become_a_snapshot_a_training_job_learns_from(
    operator_installed: Cluster,
) -> None:
    cluster = operator_installed
    restricted_namespace(cluster, NS)
    _claim(cluster, LOG_CLAIM)
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=SERVING)
    for ref in ("dataset/iris", "trainingjob/iris-v1", "modeldeployment/iris"):
        cluster.kubectl(
            "wait", "-n", NS, "--for=condition=Ready", ref, "--timeout=240s", timeout=260
        )
    service = cluster.get("service/iris-router", "-n", NS)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"

    # 40 real iris rows across the three classes; ground truth for 3 of every 4
    iris = load_iris()
    picked = [i * len(iris.target) // REQUESTS for i in range(REQUESTS)]
    ids: list[str] = []
    for i in picked:
        code, headers, _ = _post(
            f"{url}/v1/models/iris:predict", {"instances": [iris.data[i].tolist()]}
        )
        assert code == 200
        ids.append(headers["x-pilotage-request-id"])
    assert len(set(ids)) == REQUESTS
    labelled = [(ids[n], int(iris.target[i])) for n, i in enumerate(picked) if n % 4 != 3]
    code, _, answer = _post(
        f"{url}/v1/feedback",
        {"feedback": [{"requestId": rid, "label": label} for rid, label in labelled]},
    )
    assert code == 200, answer

    def logged() -> dict[str, Any] | None:
        counters = dict(_status(cluster, "md", "iris").get("logging") or {})
        enough = counters.get("written", 0) >= REQUESTS and counters.get("labels", 0) >= len(
            labelled
        )
        return counters if enough else None

    logging = wait_for(
        "the router to write every request and label to the claim",
        logged,
        describe=lambda: _status(cluster, "md", "iris").get("logging"),
    )
    assert logging["written"] == REQUESTS and logging["labels"] == len(labelled), logging
    assert logging.get("dropped", 0) == 0, logging

    cluster.kubectl("apply", "-f", "-", input=LIVE)
    ds = _finished(cluster, "dataset", "iris-live", ("Ready", "Failed"))
    assert ds["phase"] == "Ready", ds
    snapshot = ds["snapshot"]
    assert snapshot["rows"] == len(labelled), snapshot
    assert snapshot["labelledRows"] == len(labelled), snapshot
    assert snapshot["requests"] == REQUESTS and snapshot["labels"] == len(labelled), snapshot
    assert snapshot["skipped"] == 0 and snapshot["unreadable"] == 0, snapshot
    assert snapshot["sink"] == SINK, snapshot  # read from the deployment's spec.logging
    assert ds["rows"] == len(labelled), ds
    # the profiling pod mounted the sink's claim to read the logs
    jobs = cluster.get("jobs", "-n", NS, "-l", "pilotage.dev/owner-name=iris-live")["items"]
    assert jobs, "a profiling Job for iris-live"
    volumes = jobs[0]["spec"]["template"]["spec"].get("volumes", [])
    assert LOG_CLAIM in {(v.get("persistentVolumeClaim") or {}).get("claimName") for v in volumes}

    tj = _finished(cluster, "trainingjob", "iris-live-v1", ("Succeeded", "Failed"))
    assert tj["phase"] == "Succeeded", tj
    assert tj["datasetSnapshot"]["uri"] == snapshot["uri"], tj["datasetSnapshot"]
    assert tj["datasetSnapshot"]["rows"] == len(labelled), tj["datasetSnapshot"]
    print(
        f"live-data loop: {REQUESTS} requests, {len(labelled)} labels -> snapshot "
        f"{snapshot['uri']} -> {tj['phase']} in {time.monotonic() - started:.0f} s"
    )
