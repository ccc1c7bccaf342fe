"""Autoscaling of issue 18 on the real control plane, driven with kubectl and HTTP only:
a load step through the router's Service raises the server Deployment's replicas and the
router's live table names each ready server pod; a server pod killed under load leaves
the table and is replaced while the clients see no error; idle past `scaleToZeroAfter`
the Deployment is at zero with no server pod left; and a request sent at zero is
answered (the operator's long poll on the router wakes the deployment at once).

Every server pod gets a 100 ms latency fault as soon as it is ready (the chart's
`workloads.faultInjection`), so each client keeps about one request in flight whatever
the machine's speed and the load the autoscaler sees follows the number of clients.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from pilotage.wire.admin import RouterAdminError, get_routes, get_stats
from tests.cluster.conftest import RELEASE_NS, Cluster, iris_and_v1, restricted_namespace
from tests.cluster.test_story import ROWS, Traffic, wait_for

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

NS = "autoscale"
SERVER = "iris-iris-v1"
LATENCY_MS = 100
STEP_CLIENTS = 6  # 6 in flight at 2 per replica: 3 replicas (maxReplicas)

MANIFESTS = (
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
  autoscaling:
    minReplicas: 0
    maxReplicas: 3
    target: {{inFlight: 2}}
    interval: 1s
    window: 6s
    panicWindow: 2s
    scaleDownDelay: 3s
    scaleToZeroAfter: 8s
    activationTimeout: 120s
"""
)


def server_deployment(cluster: Cluster) -> dict[str, Any]:
    return dict(cluster.get(f"deployment/{SERVER}", "-n", NS))


def server_pods(cluster: Cluster) -> list[dict[str, Any]]:
    selector = "pilotage.dev/deployment=iris,pilotage.dev/role=server"
    return list(cluster.get("pods", "-n", NS, "-l", selector)["items"])


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return (
        bool(pod.get("status", {}).get("podIP"))
        and not pod["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    )


class Router:
    """The router pod's live routing table, read from its admin port with the token the
    operator keeps in a Secret."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        secret = cluster.get("secret/iris-router-admin", "-n", NS)
        self.token = base64.b64decode(secret["data"]["token"]).decode()

    def admin_url(self) -> str:
        pods = self.cluster.get("pods", "-n", NS, "-l", "pilotage.dev/role=router")["items"]
        pod = next(p for p in pods if ready(p))
        return f"http://{pod['status']['podIP']}:9090"

    def stable_stats(self) -> Any:
        """The stable variant's counters (for failure messages)."""
        try:
            return get_stats(self.admin_url(), self.token)["variants"].get("stable")
        except (RouterAdminError, StopIteration) as exc:
            return repr(exc)

    def stable_urls(self) -> list[str] | None:
        """The URLs the live table gives the stable variant (None when unreadable)."""
        try:
            table = get_routes(self.admin_url(), self.token)
        except (RouterAdminError, StopIteration):
            return None
        stable = next(v for v in table["variants"] if v["name"] == "stable")
        return [stable["url"]] if "url" in stable else list(stable["urls"])


class Faults:
    """A thread giving every ready server pod the latency fault once."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.done: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = json.dumps({"latencyMs": LATENCY_MS}).encode()
        while not self._stop.wait(0.3):
            for pod in server_pods(self.cluster):
                uid = pod["metadata"]["uid"]
                if uid in self.done or not ready(pod):
                    continue
                url = f"http://{pod['status']['podIP']}:8080/admin/faults"
                request = urllib.request.Request(url, body, {"content-type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        response.read()
                    self.done.add(uid)
                except OSError:
                    continue  # not answering yet: next round

    def __enter__(self) -> Faults:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def md_replicas(cluster: Cluster) -> Any:
    return cluster.get("modeldeployment/iris", "-n", NS).get("status", {}).get("replicas")


def pods(cluster: Cluster) -> list[tuple[str, str, bool]]:
    """Each server pod's name, address and readiness (for failure messages)."""
    return [
        (p["metadata"]["name"], p["status"].get("podIP", ""), ready(p))
        for p in server_pods(cluster)
    ]


def operator_report(cluster: Cluster) -> str:
    """The operator pods' restarts and the end of each one's log (for failure messages)."""
    out = []
    for pod in cluster.get("pods", "-n", RELEASE_NS)["items"]:
        statuses = pod["status"].get("containerStatuses") or []
        out.append(
            f"pod {pod['metadata']['name']}: "
            + ", ".join(
                f"restarts {c.get('restartCount')} last {c.get('lastState')}" for c in statuses
            )
        )
    dirs = sorted(
        (cluster.state_dir / "pods").glob(f"{RELEASE_NS}_pilotage-operator*"),
        key=lambda d: d.stat().st_mtime,
    )
    for pod_dir in dirs[-2:]:
        for log in sorted(pod_dir.glob("*.log")):
            lines = [
                ln for ln in log.read_text(errors="replace").splitlines() if "healthz" not in ln
            ]
            out.append(f"--- {pod_dir.name}/{log.name} ---")
            out += lines[-40:]
    return "\n".join(out)


def pod_url(pod: dict[str, Any]) -> str:
    return f"http://{pod['status']['podIP']}:8080"


def predict_once(url: str, timeout: float) -> tuple[int, float]:
    """One prediction: its HTTP status and how long the answer took."""
    body = json.dumps({"instances": [ROWS[0]]}).encode()
    request = urllib.request.Request(
        f"{url}/v1/models/iris:predict", body, {"content-type": "application/json"}
    )
    sent = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status, time.monotonic() - sent
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - sent


def test_load_step_pod_loss_scale_to_zero_and_cold_start(operator_installed: Cluster) -> None:
    cluster = operator_installed
    restricted_namespace(cluster, NS)
    cluster.kubectl("apply", "-f", "-", input=MANIFESTS)
    for ref in ("dataset/iris", "trainingjob/iris-v1", "modeldeployment/iris"):
        cluster.kubectl(
            "wait", "-n", NS, "--for=condition=Ready", ref, "--timeout=240s", timeout=260
        )
    service = cluster.get("service/iris-router", "-n", NS)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    router = Router(cluster)

    def replicas() -> int:
        return int(server_deployment(cluster)["spec"].get("replicas") or 0)

    def routed_ready_pods() -> list[str] | None:
        """The table's URLs when they are exactly the ready server pods' (sorted)."""
        urls = router.stable_urls()
        pods = sorted(pod_url(p) for p in server_pods(cluster) if ready(p))
        return pods if urls is not None and sorted(urls) == pods else None

    with Faults(cluster), Traffic(url, clients=1) as one:
        # ---- a load step from 1 client to STEP_CLIENTS ----------------------------
        wait_for("the first client's answers", lambda: one.answered >= 20)
        step = time.monotonic()
        with Traffic(url, clients=STEP_CLIENTS - 1) as more:
            several = wait_for(
                "several replicas, each ready pod named in the router's table",
                lambda: (
                    replicas() >= 2 and (r := routed_ready_pods()) is not None and len(r) >= 2 and r
                ),
                timeout=120,
                describe=lambda: (replicas(), router.stable_urls()),
            )
            print(
                f"load step 1 -> {STEP_CLIENTS} clients: {len(several)} pods routed "
                f"{time.monotonic() - step:.1f} s after the step (Deployment at {replicas()})"
            )
            assert all(u.startswith("http://") and ".svc" not in u for u in several), several

            # ---- a server pod killed under load ----------------------------------
            errors_before = len(one.errors) + len(more.errors)
            victim = next(p for p in server_pods(cluster) if ready(p) and pod_url(p) in several)
            name, victim_url = victim["metadata"]["name"], pod_url(victim)
            before = {p["metadata"]["name"] for p in server_pods(cluster)}
            killed = time.monotonic()
            cluster.kubectl("delete", "pod", name, "-n", NS, "--grace-period=0", "--force")

            def out_and_replaced() -> bool:
                routed = routed_ready_pods()  # every ready pod, and no other address
                if routed is None:
                    return False
                fresh = {pod_url(p) for p in server_pods(cluster) if ready(p)} - {
                    pod_url(p) for p in server_pods(cluster) if p["metadata"]["name"] in before
                }
                # the victim's address is routed again only if its replacement took it
                return bool(fresh) and (victim_url not in routed or victim_url in fresh)

            wait_for(
                "the killed pod out of the router's table and replaced",
                out_and_replaced,
                timeout=120,
                describe=lambda: (name, victim_url, router.stable_urls(), pods(cluster)),
            )
            print(
                f"killed {name}: out of the table and replaced in {time.monotonic() - killed:.1f} s"
            )
            answered_after = more.answered + one.answered
        errors = one.errors + more.errors
        # The router retries a failed inference on another replica of the variant: a
        # refused or reset connection takes the replica out at once, and once the node
        # agent has torn down the killed pod's network (its address neither answers nor
        # refuses) a connect gives up after the router's --connect-timeout (2 s) and is
        # treated the same. So the clients see no error at all.
        assert errors[errors_before:] == [], errors[errors_before:]
        assert errors[:errors_before] == [], errors[:errors_before]
        print(
            f"errors seen by the clients after the kill: {len(errors) - errors_before} "
            f"of {answered_after} answers: {errors[errors_before:][:3]}"
        )

    # ---- idle past scaleToZeroAfter: zero replicas, no server pod --------------------
    idle = time.monotonic()
    try:
        wait_for(
            "the server Deployment at zero with no server pod",
            lambda: replicas() == 0 and not server_pods(cluster),
            timeout=120,
            describe=lambda: (pods(cluster), md_replicas(cluster), router.stable_stats()),
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{operator_report(cluster)}") from None
    print(f"at zero {time.monotonic() - idle:.1f} s after the clients stopped")
    wait_for("a table with no replica", lambda: router.stable_urls() == [])

    # ---- a request at zero: held by the router, answered once a pod is ready ---------
    code, cold = predict_once(url, timeout=120)
    assert code == 200, code
    print(f"cold start (request sent at zero -> answer): {cold:.2f} s")
    assert replicas() >= 1
    cluster.kubectl("delete", "namespace", NS, "--wait=false")
