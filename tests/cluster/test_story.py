"""The whole story on the real control plane, driven as a user drives it: `helm install`,
then nothing but kubectl and HTTP requests to the router's Service.

The chart runs the operator as a pod (in-cluster config, the chart's ServiceAccount and
RBAC); every pod it creates is scheduled by kube-scheduler, owned by real Deployments and
Jobs, and run by the node agent in a namespace where Pod Security `restricted` is enforced.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from tests.cluster.conftest import (
    RELEASE_NS,
    Cluster,
    iris_and_v1,
    iris_training_job,
    pod_logs,
    restricted_namespace,
)

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

NS = "story"
T = TypeVar("T")
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.9, 5.6, 1.8]]
SHIFT = 4.0  # added to every feature: far outside the training data
P99_SLO_MS = 300
INJECTED_MS = 900

DATASET_AND_V1 = (
    iris_and_v1(NS, min_accuracy=0.8)
    + f"""
---
apiVersion: pilotage.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: iris, namespace: {NS}}}
spec:
  model:
    trainingJobSelector:
      matchLabels: {{pilotage.dev/model: iris}}
  strategy:
    type: Canary
    canary:
      steps:
        - setWeight: 50
        - pause: {{}}
  analysis:
    interval: 4s
    failureLimit: 0
    minRequests: 10
    latency: {{p99Ms: {P99_SLO_MS}}}
    errorRate: {{max: 0.05}}
"""
)

V2 = iris_training_job(
    NS,
    "iris-v2",
    "{algorithm: random_forest, hyperparameters: {n_estimators: 20, max_depth: 4}}",
    0.8,
)

MONITOR = f"""
apiVersion: pilotage.dev/v1alpha1
kind: DriftMonitor
metadata: {{name: iris, namespace: {NS}}}
spec:
  deploymentRef: {{name: iris}}
  method: psi
  threshold: 0.2
  driftShare: 0.5
  window: {{requests: 200}}
  interval: 3s
  minSamples: 60
  onDrift:
    cooldown: 1h
    retrain:
      template:
        metadata:
          labels: {{pilotage.dev/model: iris, pilotage.dev/trigger: drift}}
        spec:
          datasetRef: {{name: iris}}
          task: classification
          model: {{algorithm: decision_tree, hyperparameters: {{max_depth: 4}}}}
          evaluation:
            gates: [{{metric: accuracy, min: 0.8}}]
"""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 240.0,
    describe: Callable[[], object] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline
    (with `describe()`, e.g. the resource's status, to show where it stood)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    where = describe() if describe is not None else last
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {where!r}")


def status(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    return dict(cluster.get(f"{kind}/{name}", "-n", NS).get("status") or {})


def condition(obj_status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj_status.get("conditions", []) if c["type"] == type_), {})


def events(cluster: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    items = cluster.get("events", "-n", NS)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


def jobs(cluster: Cluster) -> list[str]:
    return sorted(j["metadata"]["name"] for j in cluster.get("jobs", "-n", NS)["items"])


@dataclass
class Traffic:
    """Clients sending predictions to the router's Service in a loop (a thread)."""

    url: str
    shift: float = 0.0
    model: str = "iris"
    codes: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    clients: int = 4
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, i: int) -> None:
        row = [v + self.shift for v in ROWS[i % len(ROWS)]]
        body = json.dumps({"instances": [row]}).encode()
        request = urllib.request.Request(
            f"{self.url}/v1/models/{self.model}:predict", body, {"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                code, version, error = (
                    response.status,
                    response.headers.get("x-pilotage-model-version", "?"),
                    None,
                )
        except urllib.error.HTTPError as exc:
            code, version, error = exc.code, None, f"{exc.code} {exc.read()[:200]!r}"
        except OSError as exc:
            code, version, error = 0, None, repr(exc)
        with self._lock:
            self.codes[code] += 1
            if version:
                self.versions[version] += 1
            if error:
                self.errors.append(error)

    def _run(self, first: int) -> None:
        i = first
        while not self._stop.is_set():
            self.one(i)
            i += 1
            self._stop.wait(0.01)

    def __enter__(self) -> Traffic:
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)

    @property
    def answered(self) -> int:
        return self.codes[200]


@pytest.fixture(scope="module")
def story(operator_installed: Cluster) -> Cluster:
    restricted_namespace(operator_installed, NS)
    return operator_installed


def operator_log(cluster: Cluster) -> str:
    return pod_logs(cluster, RELEASE_NS, "pilotage-operator", since=cluster.installed_at)


def router_url(cluster: Cluster) -> str:
    service = cluster.get("service/iris-router", "-n", NS)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def server_pod_ip(cluster: Cluster, version: str) -> str:
    pods = cluster.get("pods", "-n", NS, "-l", f"pilotage.dev/model-version={version}")["items"]
    running = [
        p for p in pods if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")
    ]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return str(running[0]["status"]["podIP"])


def test_the_story_with_kubectl_and_http_only(story: Cluster) -> None:
    cluster = story
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=DATASET_AND_V1)
    for ref in ("dataset/iris", "trainingjob/iris-v1", "modeldeployment/iris"):
        cluster.kubectl(
            "wait", "-n", NS, "--for=condition=Ready", ref, "--timeout=240s", timeout=260
        )
    md = status(cluster, "md", "iris")
    assert md["phase"] == "Healthy" and md["stable"]["version"] == "iris-v1", md
    url = router_url(cluster)

    with Traffic(url) as traffic:
        wait_for("answers from v1 through the router Service", lambda: traffic.answered >= 20)
        assert set(traffic.versions) == {"iris-v1"}, traffic.versions

        # A second model: the selector picks it up and the canary starts at 50 %.
        cluster.kubectl("apply", "-f", "-", input=V2)
        paused = wait_for(
            "the canary paused at 50 %",
            lambda: (s := status(cluster, "md", "iris")).get("phase") == "Paused" and s,
        )
        assert paused["candidate"]["version"] == "iris-v2" and paused["traffic"]["canary"] == 50
        wait_for("both versions answering", lambda: traffic.versions["iris-v2"] >= 10)
        passed = wait_for(
            "a passing analysis of the canary",
            lambda: (
                (status(cluster, "md", "iris").get("lastAnalysis") or {}).get("verdict") == "Pass"
            ),
        )
        assert passed

        # The operator pod is deleted mid-canary: its replacement resumes at the same step.
        before = status(cluster, "md", "iris")
        step_events = len(events(cluster, "iris", "StepReached"))
        jobs_before = jobs(cluster)
        old_pod = cluster.get(
            "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/component=operator"
        )
        old_name = old_pod["items"][0]["metadata"]["name"]
        cluster.kubectl("delete", "pod", "-n", RELEASE_NS, old_name, "--wait=true")
        cluster.kubectl(
            "wait", "-n", RELEASE_NS, "--for=condition=Available", "deployment/pilotage-operator",
            "--timeout=120s",
        )  # fmt: skip
        analysed_at = (before.get("lastAnalysis") or {}).get("time")
        resumed = wait_for(
            "an analysis by the new operator pod",
            lambda: (
                (s := status(cluster, "md", "iris")).get("lastAnalysis", {}).get("time")
                != analysed_at
                and s
            ),
        )
        assert resumed["currentStep"] == before["currentStep"], (before, resumed)
        assert resumed["traffic"] == before["traffic"]
        assert len(events(cluster, "iris", "StepReached")) == step_events
        assert jobs(cluster) == jobs_before

        # A latency fault in the canary's server breaches the SLO: rolled back.
        body = json.dumps({"latencyMs": INJECTED_MS}).encode()
        fault = urllib.request.Request(
            f"http://{server_pod_ip(cluster, 'iris-v2')}:8080/admin/faults",
            body,
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(fault, timeout=10) as response:
            assert json.loads(response.read())["latencyMs"] == INJECTED_MS
        injected_at = time.monotonic()
        rolled_back = wait_for(
            "the rollback",
            lambda: (s := status(cluster, "md", "iris")).get("phase") == "Degraded" and s,
            timeout=60,
            describe=lambda: status(cluster, "md", "iris"),
        )
        assert rolled_back["lastAnalysis"]["verdict"] == "Fail"
        assert rolled_back["lastAnalysis"]["failures"] == 1  # the first failed analysis
        ready = condition(rolled_back, "Ready")
        assert ready["reason"] == "RolledBack", ready
        assert rolled_back["traffic"] == {"stable": 100}, rolled_back["traffic"]
        assert "p99" in ready["message"] and str(P99_SLO_MS) in ready["message"], ready
        # the operator writes the status, then records the Event: wait for it
        warnings = wait_for("the RolledBack Event", lambda: events(cluster, "iris", "RolledBack"))
        assert warnings[0]["type"] == "Warning", warnings
        assert str(P99_SLO_MS) in warnings[0]["message"], warnings[0]["message"]
        rollback_s = time.monotonic() - injected_at
        answered_after = traffic.answered
        wait_for("answers after the rollback", lambda: traffic.answered >= answered_after + 20)

    assert traffic.codes[0] == 0 and set(traffic.codes) <= {200}, (
        traffic.codes,
        traffic.errors[:5],
    )

    # Drift: the live inputs move away from the training data; the monitor retrains.
    cluster.kubectl("apply", "-f", "-", input=MONITOR)
    with Traffic(url, shift=SHIFT) as shifted:
        drifting = wait_for(
            "the DriftMonitor to see drift",
            lambda: (s := status(cluster, "dm", "iris")).get("phase") == "Drifting" and s,
            timeout=120,
            describe=lambda: status(cluster, "dm", "iris"),
        )
    assert drifting
    retrain = wait_for(
        "a retraining TrainingJob owned by the monitor",
        lambda: [
            t
            for t in cluster.get("trainingjobs", "-n", NS)["items"]
            if any(o["kind"] == "DriftMonitor" for o in t["metadata"].get("ownerReferences", []))
        ],
    )[0]
    assert retrain["metadata"]["labels"]["pilotage.dev/trigger"] == "drift"
    version = retrain["metadata"]["name"]
    cluster.kubectl(
        "wait", "-n", NS, "--for=condition=Ready", f"trainingjob/{version}", "--timeout=240s",
        timeout=260,
    )  # fmt: skip
    with Traffic(url) as traffic:
        paused_sequence = wait_for(
            "the retrained version rolled out as the canary",
            lambda: (
                (s := status(cluster, "md", "iris")).get("phase") == "Paused"
                and (s.get("candidate") or {}).get("version") == version
                and s["routes"]["sequence"]
            ),
        )
        cluster.kubectl("annotate", "md/iris", "-n", NS, "pilotage.dev/promote=full", "--overwrite")
        promoted = wait_for(
            "the retrained version promoted",
            lambda: (
                (s := status(cluster, "md", "iris")).get("phase") == "Healthy"
                and (s.get("stable") or {}).get("version") == version
                and s
            ),
        )
        assert promoted["traffic"] == {"stable": 100}
        assert promoted["routes"]["sequence"] > paused_sequence, promoted["routes"]
        # The operator removes the old version's server only once every router pod reports
        # the promoted table in use; from then on, every answer is the retrained version's
        # (the ConfigMap's late copy of the canary table must not turn traffic back).
        wait_for(
            "the old version's server removed",
            lambda: (
                not cluster.get(
                    "deployments", "-n", NS, "-l", "pilotage.dev/model-version=iris-v1"
                )["items"]
            ),
        )
        before_check = Counter(traffic.versions)
        wait_for("more answers", lambda: traffic.versions[version] >= before_check[version] + 60)
        assert traffic.versions["iris-v1"] == before_check["iris-v1"], traffic.versions
    assert traffic.codes[0] == 0 and set(traffic.codes) <= {200}, (
        traffic.codes,
        traffic.errors[:5],
    )
    assert shifted.answered > 0

    # Deleting the ModelDeployment: the garbage collector removes every child.
    owned = {"deployments", "services", "configmaps", "secrets"}
    children = cluster.get(",".join(owned), "-n", NS, "-l", "pilotage.dev/deployment=iris")
    assert children["items"], "the ModelDeployment has children"
    cluster.kubectl("delete", "md/iris", "-n", NS)
    wait_for(
        "the garbage collector to remove the deployment's children",
        lambda: (
            not cluster.get(",".join(owned), "-n", NS, "-l", "pilotage.dev/deployment=iris")[
                "items"
            ]
        ),
        timeout=120,
    )

    log = operator_log(cluster)
    assert "Forbidden" not in log and " 403" not in log, [
        line for line in log.splitlines() if "Forbidden" in line or " 403" in line
    ][:5]
    print(
        f"story: {time.monotonic() - started:.0f} s; rollback {rollback_s:.1f} s after the "
        f"fault (analysis interval 4 s)"
    )
