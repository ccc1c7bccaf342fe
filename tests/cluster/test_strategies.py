"""Blue-green, shadow, pod-level truth and training retries on the real control plane,
driven with kubectl and HTTP only (the chart is installed by test_story's fixture)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, iris_and_v1, iris_training_job, restricted_namespace
from tests.cluster.test_story import ROWS, Traffic, condition, wait_for

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

NS = "strategies"
TOKEN = "preview-testers-token"

MODELS = (
    iris_and_v1(NS)
    + f"""
---{iris_training_job(NS, "iris-v2", "{algorithm: decision_tree, hyperparameters: {max_depth: 3}}")}
---
apiVersion: v1
kind: Secret
metadata: {{name: testers, namespace: {NS}}}
stringData: {{token: {TOKEN}}}
"""
)


def md_status(cluster: Cluster, name: str) -> dict[str, Any]:
    return dict(cluster.get(f"md/{name}", "-n", NS).get("status") or {})


def deployment(
    name: str, strategy: dict[str, Any], analysis: dict[str, Any], replicas: int = 1
) -> str:
    return json.dumps(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "model": {"trainingJobRef": {"name": "iris-v1"}},
                "replicas": replicas,
                "router": {"variantTokenSecret": "testers"},
                "strategy": strategy,
                "analysis": analysis,
            },
        }
    )


def switch_to_v2(cluster: Cluster, name: str) -> None:
    patch = json.dumps({"spec": {"model": {"trainingJobRef": {"name": "iris-v2"}}}})
    cluster.kubectl("patch", f"md/{name}", "-n", NS, "--type=merge", "-p", patch)


def router(cluster: Cluster, name: str) -> str:
    service = cluster.get(f"service/{name}-router", "-n", NS)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def predict(url: str, name: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/v1/models/{name}:predict",
        json.dumps({"instances": ROWS}).encode(),
        {"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("x-pilotage-model-version", "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.fixture(scope="module")
def models(operator_installed: Cluster) -> Iterator[Cluster]:
    installed = operator_installed
    restricted_namespace(installed, NS)
    installed.kubectl("apply", "-f", "-", input=MODELS)
    for ref in ("trainingjob/iris-v1", "trainingjob/iris-v2"):
        installed.kubectl(
            "wait", "-n", NS, "--for=condition=Ready", ref, "--timeout=240s", timeout=260
        )
    yield installed


def test_blue_green_preview_switch_and_instant_switch_back(models: Cluster) -> None:
    cluster = models
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {"autoPromotionSeconds": 3, "scaleDownDelaySeconds": 600},
    }
    cluster.kubectl("apply", "-f", "-", input=deployment("bg", strategy, {"interval": "2s"}))
    cluster.kubectl(
        "wait", "-n", NS, "--for=condition=Ready", "md/bg", "--timeout=180s", timeout=200
    )
    url = router(cluster, "bg")
    assert predict(url, "bg") == (200, "iris-v1")

    switch_to_v2(cluster, "bg")
    wait_for(
        "the preview answering with its token",
        lambda: (
            predict(url, "bg", {"x-pilotage-variant": "preview", "x-pilotage-variant-token": TOKEN})
            == (200, "iris-v2")
        ),
        describe=lambda: md_status(cluster, "bg"),
    )
    assert predict(url, "bg") == (200, "iris-v1")  # users still get the stable version
    assert predict(url, "bg", {"x-pilotage-variant": "preview"})[0] == 403  # no token

    promoted = wait_for(
        "the automatic switch",
        lambda: (s := md_status(cluster, "bg")).get("stable", {}).get("version") == "iris-v2" and s,
        describe=lambda: md_status(cluster, "bg"),
    )
    assert promoted["previous"]["version"] == "iris-v1" and promoted["scaleDownAt"]
    wait_for("users on v2", lambda: predict(url, "bg") == (200, "iris-v2"))

    cluster.kubectl("annotate", "md/bg", "-n", NS, "pilotage.dev/abort=switch-back", "--overwrite")
    switched = wait_for(
        "the switch back to v1",
        lambda: (s := md_status(cluster, "bg")).get("stable", {}).get("version") == "iris-v1" and s,
        timeout=60,
        describe=lambda: md_status(cluster, "bg"),
    )
    assert switched["phase"] == "Degraded" and condition(switched, "Ready")["reason"] == "Aborted"
    wait_for("users back on v1", lambda: predict(url, "bg") == (200, "iris-v1"), timeout=30)
    reasons = {e["reason"] for e in cluster.get("events", "-n", NS)["items"]}
    assert {"Promoted", "SwitchedBack"} <= reasons, reasons
    cluster.kubectl("delete", "md/bg", "-n", NS)


def test_shadow_mirrors_compares_and_promotes(models: Cluster) -> None:
    cluster = models
    strategy = {"type": "Shadow", "shadow": {"percent": 100, "duration": "20s", "promote": True}}
    analysis = {"interval": "2s", "minRequests": 5, "shadow": {"minAgreement": 0.5}}
    cluster.kubectl("apply", "-f", "-", input=deployment("sh", strategy, analysis))
    cluster.kubectl(
        "wait", "-n", NS, "--for=condition=Ready", "md/sh", "--timeout=180s", timeout=200
    )
    url = router(cluster, "sh")
    with Traffic(url, model="sh") as traffic:
        switch_to_v2(cluster, "sh")
        mirroring = wait_for(
            "the shadow being compared",
            lambda: (
                (s := md_status(cluster, "sh")).get("candidate", {}).get("version") == "iris-v2"
                and (s.get("lastAnalysis") or {}).get("agreement") is not None
                and s
            ),
            describe=lambda: md_status(cluster, "sh"),
        )
        assert mirroring["traffic"].get("shadow", 0) == 0
        seen_while_mirroring = Counter(traffic.versions)
        promoted = wait_for(
            "promotion on agreement",
            lambda: (
                (s := md_status(cluster, "sh")).get("stable", {}).get("version") == "iris-v2" and s
            ),
            describe=lambda: md_status(cluster, "sh"),
        )
        assert promoted["phase"] == "Healthy"
    # the shadow's answers never reached a client before promotion
    assert set(seen_while_mirroring) == {"iris-v1"}, seen_while_mirroring
    assert set(traffic.codes) == {200}, (traffic.codes, traffic.errors[:5])
    cluster.kubectl("delete", "md/sh", "-n", NS)


def test_a_server_pod_killed_under_traffic_is_replaced_without_client_errors(
    models: Cluster,
) -> None:
    cluster = models
    strategy = {"type": "Canary", "canary": {"steps": [{"setWeight": 100}]}}
    cluster.kubectl(
        "apply", "-f", "-", input=deployment("kill", strategy, {"interval": "2s"}, replicas=2)
    )
    cluster.kubectl(
        "wait", "-n", NS, "--for=condition=Ready", "md/kill", "--timeout=180s", timeout=200
    )
    selector = "pilotage.dev/deployment=kill,pilotage.dev/role=server"
    pods = cluster.get("pods", "-n", NS, "-l", selector)["items"]
    assert len(pods) == 2
    with Traffic(router(cluster, "kill"), model="kill") as traffic:
        wait_for("traffic flowing", lambda: traffic.answered >= 20)
        victim = pods[0]["metadata"]["name"]
        cluster.kubectl("delete", "pod", victim, "-n", NS, "--wait=true")

        def replaced() -> bool:
            current = cluster.get("pods", "-n", NS, "-l", selector)["items"]
            ready = [
                p
                for p in current
                if p["metadata"]["name"] != victim
                and condition(p["status"], "Ready").get("status") == "True"
            ]
            return len(ready) == 2

        wait_for("a replacement pod Ready", replaced, timeout=120)
        answered = traffic.answered
        wait_for("answers after the replacement", lambda: traffic.answered >= answered + 20)
    assert set(traffic.codes) == {200}, (traffic.codes, traffic.errors[:5])
    cluster.kubectl("delete", "md/kill", "-n", NS)


def test_a_training_pod_that_dies_is_retried_and_the_status_says_why(models: Cluster) -> None:
    cluster = models
    doc = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "killed", "namespace": NS},
        "spec": {
            "datasetRef": {"name": "iris"},
            "task": "classification",
            # slow enough (seconds of fitting and ONNX export) to be killed mid-run
            "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 3000}},
            "backoffLimit": 1,
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def running_pod() -> str | None:
        pods = cluster.get("pods", "-n", NS, "-l", "pilotage.dev/owner-name=killed")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return str(running[0]["metadata"]["name"]) if running else None

    first = wait_for("the first attempt's pod running", running_pod)
    cluster.kubectl("delete", "pod", first, "-n", NS, "--grace-period=0", "--force", "--wait=true")

    def finished() -> dict[str, Any] | None:
        status = dict(cluster.get("tj/killed", "-n", NS).get("status") or {})
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    done = wait_for(
        "the second attempt to succeed",
        finished,
        timeout=300,
        describe=lambda: cluster.get("tj/killed", "-n", NS).get("status"),
    )
    assert done["phase"] == "Succeeded" and done["attempts"] == 2, done
    retries = [
        e
        for e in cluster.get("events", "-n", NS)["items"]
        if e["involvedObject"]["name"] == "killed" and e["reason"] == "TrainingRetry"
    ]
    assert len(retries) == 1 and "attempt 1 failed" in retries[0]["message"], retries


def test_active_deadline_ends_the_training_job_naming_it(models: Cluster) -> None:
    cluster = models
    doc = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "too-slow", "namespace": NS},
        "spec": {
            "datasetRef": {"name": "iris"},
            "model": {"algorithm": "random_forest"},
            "backoffLimit": 1,
            "activeDeadlineSeconds": 1,
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
    failed = wait_for(
        "the TrainingJob to fail on its deadline",
        lambda: (
            (s := dict(cluster.get("tj/too-slow", "-n", NS).get("status") or {})).get("phase")
            == "Failed"
            and s
        ),
        describe=lambda: cluster.get("tj/too-slow", "-n", NS).get("status"),
    )
    ready = condition(failed, "Ready")
    assert ready["reason"] == "DeadlineExceeded" and "activeDeadlineSeconds" in ready["message"], (
        ready
    )
    # the deadline covers every attempt (as a Job's does): nothing is retried after it
    assert failed["attempts"] == 1
