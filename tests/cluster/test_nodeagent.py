"""The node agent on the real control plane: pods bound by the real scheduler, run by the
agent, driven by the real Deployment/ReplicaSet/Job/EndpointSlice controllers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testcluster.nodeagent import network
from tests.support.models import build_model

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

SERVER = "ghcr.io/pilotage-dev/pilotage-server:0.1.0"
TRAINER = "ghcr.io/pilotage-dev/pilotage-trainer:0.1.0"
OPERATOR = "ghcr.io/pilotage-dev/pilotage-operator:0.1.0"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 120) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def ns(cluster: Any) -> Iterator[str]:
    name = f"na-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        "the default ServiceAccount",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(cluster: Any, *objects: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def job(
    name: str, ns: str, container: dict[str, Any], backoff_limit: int = 0, **pod_spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", **container}],
                    **pod_spec,
                }
            },
        },
    }


def job_condition(cluster: Any, ns: str, name: str) -> str | None:
    status = cluster.get("job", name, "-n", ns).get("status", {})
    for condition in status.get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def job_pod(cluster: Any, ns: str, name: str) -> dict[str, Any]:
    pods = cluster.get("pods", "-n", ns, "-l", f"job-name={name}")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def pod_log(
    cluster: Any, pod: dict[str, Any], container: str = "main", state_dir: Path | None = None
) -> str:
    meta = pod["metadata"]
    path = (
        (state_dir or cluster.state_dir)
        / "pods"
        / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        / f"{container}.log"
    )
    return path.read_text(errors="replace") if path.exists() else ""


def run_job(
    cluster: Any,
    ns: str,
    name: str,
    container: dict[str, Any],
    backoff_limit: int = 0,
    **pod_spec: Any,
) -> tuple[str, dict[str, Any]]:
    apply(cluster, job(name, ns, container, backoff_limit, **pod_spec))
    condition = wait_for(lambda: job_condition(cluster, ns, name), f"Job {name} to finish")
    pod = job_pod(cluster, ns, name)
    return condition, pod


def terminated(pod: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return pod["status"]["containerStatuses"][index]["state"]["terminated"]


def python(code: str) -> list[str]:
    return ["python", "-c", code]


# ---- the node -------------------------------------------------------------------------------


def test_node_is_registered_ready_with_capacity_address_and_lease(cluster: Any) -> None:
    node = cluster.get("node", cluster.node_name)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert int(node["status"]["allocatable"]["pods"]) > 0
    assert node["status"]["capacity"]["memory"].endswith("Ki")
    internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert len(internal) == 1 and internal[0].startswith("10.244.") and internal[0].endswith(".1")
    assert node["spec"]["podCIDR"].startswith("10.244.")

    def untainted() -> bool:  # the controller lifts the not-ready taint admission put on
        node = cluster.get("node", cluster.node_name)
        return not [t for t in node["spec"].get("taints", []) if t["effect"] == "NoSchedule"]

    wait_for(untainted, "the node's not-ready taint to be lifted", timeout=60)
    lease = cluster.get("lease", cluster.node_name, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == cluster.node_name


# ---- workloads ------------------------------------------------------------------------------


def test_a_deployment_of_ours_serves_a_model_through_a_service_name(
    cluster: Any, ns: str, tmp_path: Path
) -> None:
    model = build_model(tmp_path / "iris")
    for path in [tmp_path, *model.rglob("*")]:  # the server runs as UID 10001
        path.chmod(0o755 if path.is_dir() else 0o644)
    model.chmod(0o755)
    labels = {"app": "iris"}
    apply(
        cluster,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "iris", "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": SERVER,
                                "args": [
                                    "serve",
                                    "--model-uri",
                                    "file:///models/iris",
                                    "--host",
                                    "0.0.0.0",
                                    "--port",
                                    "8080",
                                ],
                                "ports": [{"name": "http", "containerPort": 8080}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/v2/health/ready", "port": "http"},
                                    "periodSeconds": 1,
                                },
                                "volumeMounts": [
                                    {"name": "model", "mountPath": "/models/iris", "readOnly": True}
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "model", "hostPath": {"path": str(model), "type": "Directory"}}
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "iris", "namespace": ns},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    )
    cluster.kubectl(
        "wait",
        "-n",
        ns,
        "--for=condition=Available",
        "deployment/iris",
        "--timeout=120s",
        timeout=150,
    )
    pod = cluster.get("pods", "-n", ns, "-l", "app=iris")["items"][0]
    assert pod["status"]["podIP"].startswith("10.244.")
    assert pod["status"]["containerStatuses"][0]["ready"] is True

    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    client = (
        "import json, os, urllib.request\n"
        "out = {}\n"
        "for host in ('iris', f\"iris.{os.environ['NS']}\", f\"iris.{os.environ['NS']}.svc.cluster.local\"):\n"
        f"    req = urllib.request.Request(f'http://{{host}}/v1/models/iris:predict', data={body!r}.encode(),"
        " headers={'Content-Type': 'application/json'})\n"
        "    out[host] = json.load(urllib.request.urlopen(req, timeout=10))['predictions']\n"
        "out['env'] = os.environ['IRIS_SERVICE_HOST']\n"
        "ready = f\"http://{os.environ['SERVER_IP']}:8080/v2/health/ready\"\n"
        "out['direct'] = urllib.request.urlopen(ready, timeout=10).status\n"
        "open('/dev/termination-log', 'w').write(json.dumps(out))\n"
    )
    env = [
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "SERVER_IP", "value": pod["status"]["podIP"]},  # pod to pod by IP
    ]
    condition, client_pod = run_job(
        cluster, ns, "client", {"image": TRAINER, "command": python(client), "env": env}
    )
    assert condition == "Complete", pod_log(cluster, client_pod)
    answers = json.loads(terminated(client_pod)["message"])
    service = cluster.get("service", "iris", "-n", ns)
    assert answers.pop("env") == service["spec"]["clusterIP"]
    assert answers.pop("direct") == 200
    assert len(answers) == 3 and len({json.dumps(a) for a in answers.values()}) == 1
    assert len(answers["iris"]) == 2

    # The Service from the host, through the same proxy.
    request = urllib.request.Request(
        f"http://{service['spec']['clusterIP']}/v1/models/iris:predict",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert json.load(urllib.request.urlopen(request, timeout=10))["predictions"] == answers["iris"]

    # Scaling down deletes the pod gracefully, and the agent finishes the deletion.
    cluster.kubectl("scale", "-n", ns, "deployment/iris", "--replicas=0")
    wait_for(
        lambda: not cluster.get("pods", "-n", ns, "-l", "app=iris")["items"],
        "the server pod to be deleted",
    )


def test_a_pod_reads_the_api_with_its_service_account_and_its_role_bounds_it(
    cluster: Any, ns: str
) -> None:
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "reader", "namespace": ns},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "configmap-reader", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader", "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    # Raw HTTPS with the mounted token and CA, and the operator's own credential loader
    # (kubernetes 36.0.0's load_incluster_config alone sends no token: see
    # pilotage/kubeconnection.py).
    code = (
        "import json, os, ssl, urllib.error, urllib.request\n"
        "from kubernetes import client\n"
        "from kubernetes.client.exceptions import ApiException\n"
        "from pilotage.kubeconnection import client_configuration\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ns = open(sa + '/namespace').read()\n"
        "base = f\"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}\"\n"
        "tls = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "auth = {'Authorization': 'Bearer ' + open(sa + '/token').read()}\n"
        "out = {'namespace': ns}\n"
        "for what in ('configmaps', 'secrets'):\n"
        "    try:\n"
        "        urllib.request.urlopen(urllib.request.Request(f'{base}/api/v1/namespaces/{ns}/{what}', headers=auth), context=tls)\n"
        "        out['raw ' + what] = 200\n"
        "    except urllib.error.HTTPError as exc:\n"
        "        out['raw ' + what] = exc.code\n"
        "api = client.CoreV1Api(client.ApiClient(client_configuration()))\n"
        "out['configmaps'] = sorted(c.metadata.name for c in api.list_namespaced_config_map(ns).items)\n"
        "try:\n"
        "    api.list_namespaced_pod(ns); out['pods'] = 200\n"
        "except ApiException as exc:\n"
        "    out['pods'] = exc.status\n"
        "open('/dev/termination-log', 'w').write(json.dumps(out))\n"
    )
    condition, pod = run_job(
        cluster,
        ns,
        "whoami",
        {"image": OPERATOR, "command": python(code)},
        serviceAccountName="reader",
    )
    assert condition == "Complete", pod_log(cluster, pod)
    result = json.loads(terminated(pod)["message"])
    assert result["namespace"] == ns
    assert "kube-root-ca.crt" in result["configmaps"]
    assert (result["raw configmaps"], result["raw secrets"], result["pods"]) == (200, 403, 403)


def test_env_volumes_working_dir_and_security_context_reach_the_process(
    cluster: Any, ns: str
) -> None:
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": ns},
            "data": {"level": "debug", "MODE": "fast"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns},
            "stringData": {"password": "s3cret"},
        },
    )
    code = (
        "import json, os\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "st = os.stat('/etc/settings/level')\n"
        "open('/scratch/written', 'w').write('ok')\n"
        "out = {'uid': os.getuid(), 'gid': os.getgid(), 'groups': sorted(os.getgroups()), 'cwd': os.getcwd(),\n"
        " 'env': {k: os.environ.get(k) for k in ('LEVEL', 'PW', 'POD', 'IP', 'CFG_MODE', 'GREETING', 'KUBERNETES_SERVICE_HOST')},\n"
        " 'files': {p: open(p).read() for p in ('/etc/settings/level', '/etc/creds/password', sa + '/namespace', '/etc/info/labels')},\n"
        " 'token': len(open(sa + '/token').read()), 'ca': open(sa + '/ca.crt').read().startswith('-----BEGIN CERTIFICATE'),\n"
        " 'settings_gid': st.st_gid, 'scratch': open('/scratch/written').read(),\n"
        " 'hostname': __import__('socket').gethostname()}\n"
        "open('/dev/termination-log', 'w').write(json.dumps(out))\n"
    )
    container = {
        "image": TRAINER,
        "command": python(code),
        "workingDir": "/work/dir",
        "env": [
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}},
            },
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GREETING", "value": "level=$(LEVEL)"},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "volumeMounts": [
            {"name": "settings", "mountPath": "/etc/settings"},
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "info", "mountPath": "/etc/info"},
        ],
        "securityContext": {"runAsUser": 1234},
    }
    condition, pod = run_job(
        cluster,
        ns,
        "inspect",
        container,
        securityContext={"runAsGroup": 2345, "fsGroup": 3456, "supplementalGroups": [4567]},
        volumes=[
            {"name": "settings", "configMap": {"name": "settings"}},
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "scratch", "emptyDir": {}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
        ],
    )
    assert condition == "Complete", pod_log(cluster, pod)
    out = json.loads(terminated(pod)["message"])
    assert (out["uid"], out["gid"], out["groups"]) == (1234, 2345, [3456, 4567])
    assert out["cwd"] == "/work/dir"
    assert out["env"] == {
        "LEVEL": "debug",
        "PW": "s3cret",
        "POD": pod["metadata"]["name"],
        "IP": pod["status"]["podIP"],
        "CFG_MODE": "fast",
        "GREETING": "level=debug",
        "KUBERNETES_SERVICE_HOST": out["env"]["KUBERNETES_SERVICE_HOST"],
    }
    assert out["env"]["KUBERNETES_SERVICE_HOST"].startswith("10.96.")
    assert (
        out["files"]["/etc/settings/level"] == "debug"
        and out["files"]["/etc/creds/password"] == "s3cret"
    )
    assert out["files"]["/var/run/secrets/kubernetes.io/serviceaccount/namespace"] == ns
    assert 'job-name="inspect"' in out["files"]["/etc/info/labels"]
    assert out["token"] > 100 and out["ca"] is True
    assert out["settings_gid"] == 3456 and out["scratch"] == "ok"
    assert out["hostname"] == pod["metadata"]["name"]
    assert not os.path.exists("/work/dir") and not os.path.exists("/etc/settings")


def test_a_failing_job_reports_exit_code_and_termination_message(cluster: Any, ns: str) -> None:
    code = "import sys\nprint('starting')\nprint('cannot open the data set', file=sys.stderr)\nsys.exit(3)\n"
    condition, pod = run_job(
        cluster,
        ns,
        "fails",
        {
            "image": TRAINER,
            "command": python(code),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        },
    )
    assert condition == "Failed"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (3, "Error")
    assert "cannot open the data set" in state["message"]
    assert pod["status"]["phase"] == "Failed"

    summary = (
        "import json\nopen('/var/log/summary.json', 'w').write(json.dumps({'accuracy': 0.97}))\n"
    )
    condition, pod = run_job(
        cluster,
        ns,
        "succeeds",
        {
            "image": TRAINER,
            "command": python(summary),
            "terminationMessagePath": "/var/log/summary.json",
        },
    )
    assert condition == "Complete"
    assert json.loads(terminated(pod)["message"]) == {"accuracy": 0.97}
    assert terminated(pod)["exitCode"] == 0 and pod["status"]["phase"] == "Succeeded"
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")


def test_an_image_not_of_ours_fails_the_container_with_a_clear_reason(
    cluster: Any, ns: str
) -> None:
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": ns},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    )

    def waiting() -> dict[str, Any] | None:
        statuses = (
            cluster.get("pod", "nginx", "-n", ns).get("status", {}).get("containerStatuses") or []
        )
        state = statuses[0]["state"].get("waiting") if statuses else None
        return state if state and state.get("reason") == "ImageNotRunnable" else None

    state = wait_for(waiting, "the ImageNotRunnable reason")
    assert 'image "nginx:1.27"' in state["message"]
    assert cluster.get("pod", "nginx", "-n", ns)["status"]["phase"] == "Pending"
    # A pod that never started is still deleted promptly (the agent finishes the deletion).
    cluster.kubectl(
        "delete", "pod", "nginx", "-n", ns, "--wait=true", "--timeout=120s", timeout=150
    )


def test_a_readiness_probe_gates_ready_and_the_service_endpoints(cluster: Any, ns: str) -> None:
    gate = "import os, sys\nsys.exit(0 if os.path.exists('/flag/ready') else 1)\n"
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "gated", "namespace": ns, "labels": {"app": "gated"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": SERVER,
                        "command": ["python", "-m", "http.server", "8000", "--directory", "/flag"],
                        "ports": [{"containerPort": 8000}],
                        "readinessProbe": {
                            "exec": {"command": python(gate)},
                            "periodSeconds": 1,
                            "failureThreshold": 1,
                        },
                        "volumeMounts": [{"name": "flag", "mountPath": "/flag"}],
                    }
                ],
                "volumes": [{"name": "flag", "emptyDir": {}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gated", "namespace": ns},
            "spec": {"selector": {"app": "gated"}, "ports": [{"port": 80, "targetPort": 8000}]},
        },
    )

    def pod_ready(expected: bool) -> bool:
        pod = cluster.get("pod", "gated", "-n", ns)
        if pod.get("status", {}).get("phase") != "Running":
            return False
        ready = next((c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"), None)
        return ready is not None and (ready["status"] == "True") == expected

    def endpoint_ready(expected: bool) -> bool:
        slices = cluster.get("endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=gated")[
            "items"
        ]
        endpoints = [e for s in slices for e in s.get("endpoints") or []]
        return len(endpoints) == 1 and endpoints[0]["conditions"].get("ready") is expected

    wait_for(lambda: pod_ready(False), "the pod to run, not ready")
    wait_for(lambda: endpoint_ready(False), "a not-ready endpoint")
    pod = cluster.get("pod", "gated", "-n", ns)
    ip = cluster.get("service", "gated", "-n", ns)["spec"]["clusterIP"]
    with pytest.raises(OSError):  # no ready endpoint: the proxy closes the connection
        urllib.request.urlopen(f"http://{ip}/ready", timeout=5)

    flag = (
        cluster.state_dir
        / "pods"
        / f"{ns}_gated_{pod['metadata']['uid']}"
        / "volumes"
        / "flag"
        / "ready"
    )
    flag.write_text("yes")
    wait_for(lambda: pod_ready(True), "Ready=True")
    wait_for(lambda: endpoint_ready(True), "a ready endpoint")
    assert wait_for(lambda: _get_or_none(f"http://{ip}/ready"), "the Service to answer") == b"yes"

    flag.unlink()
    wait_for(lambda: pod_ready(False), "Ready=False again")
    wait_for(lambda: endpoint_ready(False), "the endpoint not ready again")


def _get_or_none(url: str) -> bytes | None:
    try:
        return urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        return None


def test_restart_policies_restart_with_a_count(cluster: Any, ns: str) -> None:
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "crashy", "namespace": ns},
            "spec": {
                "restartPolicy": "Always",
                "containers": [
                    {"name": "c", "image": TRAINER, "command": python("raise SystemExit(2)")}
                ],
            },
        },
    )

    def restarted_twice() -> dict[str, Any] | None:
        statuses = (
            cluster.get("pod", "crashy", "-n", ns).get("status", {}).get("containerStatuses") or []
        )
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 2 else None

    status = wait_for(restarted_twice, "two restarts")
    assert status["lastState"]["terminated"]["exitCode"] == 2
    assert cluster.get("pod", "crashy", "-n", ns)["status"]["phase"] == "Running"

    # OnFailure: the first run fails, the restarted one succeeds (emptyDir survives restarts).
    once = "import os, sys\nif os.path.exists('/scratch/once'): sys.exit(0)\nopen('/scratch/once', 'w').close()\nsys.exit(1)\n"
    condition, pod = run_job(
        cluster,
        ns,
        "retry",
        {
            "image": TRAINER,
            "command": python(once),
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        },
        backoff_limit=2,  # OnFailure: the Job fails once restarts reach the limit
        restartPolicy="OnFailure",
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    assert condition == "Complete"
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert (
        status["lastState"]["terminated"]["exitCode"] == 1
        and status["state"]["terminated"]["exitCode"] == 0
    )


def test_deletion_sends_sigterm_and_the_pod_goes_away(cluster: Any, ns: str) -> None:
    code = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('got SIGTERM', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('started', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "graceful", "namespace": ns},
            "spec": {
                "terminationGracePeriodSeconds": 300,
                "containers": [{"name": "main", "image": TRAINER, "command": python(code)}],
            },
        },
    )
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "pod/graceful", "--timeout=120s", timeout=150
    )
    pod = cluster.get("pod", "graceful", "-n", ns)
    wait_for(lambda: "started" in pod_log(cluster, pod), "the container to start")
    began = time.monotonic()
    cluster.kubectl(
        "delete", "pod", "graceful", "-n", ns, "--wait=true", "--timeout=120s", timeout=150
    )
    assert time.monotonic() - began < 120  # gone once the process exited, not after the 300 s grace
    assert "got SIGTERM" in pod_log(cluster, pod)


def test_a_claim_is_provisioned_as_a_host_directory_and_bound(cluster: Any, ns: str) -> None:
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": ns},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    write = "import os\nopen('/data/out.txt', 'w').write(f'written by {os.getuid()}')\n"
    condition, pod = run_job(
        cluster,
        ns,
        "writer",
        {
            "image": TRAINER,
            "command": python(write),
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    assert condition == "Complete", pod_log(cluster, pod)
    assert cluster.get("pvc", "data", "-n", ns)["status"]["phase"] == "Bound"
    assert (cluster.state_dir / "pvc" / ns / "data" / "out.txt").read_text() == "written by 10001"


def test_an_unsupported_volume_leaves_the_pod_waiting_with_the_reason(
    cluster: Any, ns: str
) -> None:
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "nfs", "namespace": ns},
            "spec": {
                "containers": [{"name": "main", "image": TRAINER, "command": python("pass")}],
                "volumes": [{"name": "share", "nfs": {"server": "nfs.example", "path": "/x"}}],
            },
        },
    )

    def waiting() -> str | None:
        statuses = (
            cluster.get("pod", "nfs", "-n", ns).get("status", {}).get("containerStatuses") or []
        )
        state = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return state.get("message") if "MountVolume" in state.get("message", "") else None

    assert "volume share: volume type ['nfs'] is not supported" in wait_for(
        waiting, "the volume error"
    )
    node = cluster.get("node", cluster.node_name)
    assert next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_cleanup_after_a_sigkilled_agent_leaves_no_process_namespace_link_or_mount(
    cluster: Any, ns: str, tmp_path: Path
) -> None:
    """A second agent (node pilotage-node-b, a bridge of its own) runs a pod, is SIGKILLed,
    and `python -m testcluster.nodeagent cleanup` removes everything it had made."""
    n = cluster.state.n
    bridge, node = f"pilu{n}br", "pilotage-node-b"
    prefix = network.prefix_of(bridge)
    state = tmp_path / "node-b"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    argv = [sys.executable, "-m", "testcluster.nodeagent"]
    agent = subprocess.Popen(
        [
            *argv,
            f"--kubeconfig={cluster.kubeconfig}",
            f"--node-name={node}",
            f"--bridge={bridge}",
            f"--pod-cidr=10.245.{n}.0/24",
            f"--service-cidr=10.96.{n}.0/24",
            f"--apiserver=127.0.0.1:{cluster.state.ports['apiserver']}",
            f"--state-dir={state}",
            f"--venv={sys.prefix}",
            f"--log={tmp_path / 'agent-b.log'}",
            "--no-service-proxy",
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        sleeper = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)\n"
        apply(
            cluster,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "on-b", "namespace": ns},
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {
                            "name": "main",
                            "image": TRAINER,
                            "command": python(sleeper),
                            "volumeMounts": [{"name": "scratch", "mountPath": "/models/scratch"}],
                        }
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                },
            },
        )

        def running_pid() -> int | None:
            status = cluster.get("pod", "on-b", "-n", ns).get("status", {})
            statuses = status.get("containerStatuses") or []
            if not statuses or "running" not in statuses[0]["state"]:
                return None
            return int(statuses[0]["containerID"].removeprefix("process://"))

        pid = wait_for(running_pid, "the pod on the second node to run")
        namespaces, links = network.ours(prefix)
        assert len(namespaces) == 1 and len(links) == 1
        deadline = time.monotonic() + 60
        while network.netns_pids(namespaces[0]) != [pid]:
            if time.monotonic() > deadline:
                pod = cluster.get("pod", "on-b", "-n", ns)
                raise AssertionError(
                    f"container {pid} not alone in {namespaces[0]}: "
                    f"{network.netns_pids(namespaces[0])}; etc {sorted(os.listdir('/etc/netns'))} "
                    f"{sorted(os.listdir('/etc/netns/' + namespaces[0]))}; "
                    f"log {pod_log(cluster, pod, state_dir=state)!r}; agent log "
                    f"{(tmp_path / 'agent-b.log').read_text()[-3000:]}"
                )
            time.sleep(0.1)

        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=60)
        os.kill(pid, 0)  # the container outlives its agent

        result = subprocess.run(
            [*argv, "cleanup", f"--bridge={bridge}", f"--state-dir={state}"],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert f"removed netns {namespaces[0]}" in result.stdout
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the container process to be gone", 60)
        assert network.ours(prefix) == ([], [])
        assert not list(Path("/etc/netns").glob(f"{prefix}*"))
        assert not network.mounts_under([str(state)])
        addresses = subprocess.run(
            ["ip", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True
        )
        assert "inet " not in addresses.stdout
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        network.cleanup(bridge, state)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        cluster.kubectl(
            "delete", "pod", "on-b", "-n", ns, "--force", "--grace-period=0", check=False
        )
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def test_a_failing_liveness_probe_restarts_the_container(cluster: Any, ns: str) -> None:
    sleeper = "import time\nwhile True: time.sleep(1)\n"
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stale", "namespace": ns},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {
                        "name": "main",
                        "image": TRAINER,
                        "command": python(sleeper),
                        "livenessProbe": {
                            "exec": {"command": python("raise SystemExit(1)")},
                            "periodSeconds": 1,
                            "failureThreshold": 2,
                        },
                    }
                ],
            },
        },
    )

    def restarted() -> dict[str, Any] | None:
        statuses = (
            cluster.get("pod", "stale", "-n", ns).get("status", {}).get("containerStatuses") or []
        )
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    status = wait_for(restarted, "a restart after the liveness probe failed")
    assert status["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGTERM


def test_init_containers_run_first_and_a_tcp_probe_marks_ready(cluster: Any, ns: str) -> None:
    serve = ["python", "-m", "http.server", "8000", "--directory", "/shared"]
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "initialized", "namespace": ns},
            "spec": {
                "initContainers": [
                    {
                        "name": "prepare",
                        "image": TRAINER,
                        "command": python("open('/shared/index.html', 'w').write('prepared')"),
                        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                    }
                ],
                "containers": [
                    {
                        "name": "web",
                        "image": SERVER,
                        "command": serve,
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                    }
                ],
                "volumes": [{"name": "shared", "emptyDir": {}}],
            },
        },
    )
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "pod/initialized", "--timeout=120s", timeout=150
    )
    pod = cluster.get("pod", "initialized", "-n", ns)
    init = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert (init["exitCode"], init["reason"]) == (0, "Completed")
    assert (
        init["finishedAt"] <= pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    )
    assert _get_or_none(f"http://{pod['status']['podIP']}:8000/index.html") == b"prepared"


def test_a_service_created_after_the_pod_resolves_inside_it(cluster: Any, ns: str) -> None:
    resolve = (
        "import socket, time\n"
        "while True:\n"
        "    try:\n"
        "        ip = socket.getaddrinfo('late', 80)[0][4][0]; break\n"
        "    except socket.gaierror:\n"
        "        time.sleep(0.2)\n"
        "open('/dev/termination-log', 'w').write(ip)\n"
    )
    apply(cluster, job("resolver", ns, {"image": TRAINER, "command": python(resolve)}))

    def resolver_running() -> bool:
        pods = cluster.get("pods", "-n", ns, "-l", "job-name=resolver")["items"]
        return bool(pods) and pods[0].get("status", {}).get("phase") == "Running"

    wait_for(resolver_running, "the resolver to run")  # before the Service exists
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "late", "namespace": ns},
            "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]},
        },
    )
    assert (
        wait_for(lambda: job_condition(cluster, ns, "resolver"), "the resolver to finish")
        == "Complete"
    )
    ip = cluster.get("service", "late", "-n", ns)["spec"]["clusterIP"]
    assert terminated(job_pod(cluster, ns, "resolver"))["message"] == ip


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(cluster: Any, ns: str) -> None:
    stubborn = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('ignoring SIGTERM', flush=True))\n"
        "print('started', flush=True)\n"
        "while True: time.sleep(0.1)\n"
    )
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stubborn", "namespace": ns},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "main", "image": TRAINER, "command": python(stubborn)}],
            },
        },
    )
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "pod/stubborn", "--timeout=120s", timeout=150
    )
    pod = cluster.get("pod", "stubborn", "-n", ns)
    wait_for(lambda: "started" in pod_log(cluster, pod), "the container to start")
    began = time.monotonic()
    cluster.kubectl(
        "delete", "pod", "stubborn", "-n", ns, "--wait=true", "--timeout=120s", timeout=150
    )
    assert 2 <= time.monotonic() - began < 60
    assert "ignoring SIGTERM" in pod_log(cluster, pod)


def test_configmap_changes_reach_a_running_pods_volume(cluster: Any, ns: str) -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "routes", "namespace": ns},
        "data": {"table.yaml": "v1"},
    }
    watch = (
        "import time\n"
        "seen = [open('/etc/routes/table.yaml').read()]\n"
        "print('started', flush=True)\n"
        "while seen[-1] != 'v2':\n"
        "    time.sleep(0.1); seen.append(open('/etc/routes/table.yaml').read())\n"
        "open('/dev/termination-log', 'w').write(seen[0] + '->' + seen[-1])\n"
    )
    apply(
        cluster,
        configmap,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "watcher", "namespace": ns},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": SERVER,
                        "command": python(watch),
                        "volumeMounts": [{"name": "routes", "mountPath": "/etc/routes"}],
                    }
                ],
                "volumes": [{"name": "routes", "configMap": {"name": "routes"}}],
            },
        },
    )
    pod = wait_for(
        lambda: (
            (p := cluster.get("pod", "watcher", "-n", ns)).get("status", {}).get("phase")
            == "Running"
            and p
        ),
        "the watcher to run",
    )
    wait_for(lambda: "started" in pod_log(cluster, pod), "the watcher to read v1")
    apply(cluster, {**configmap, "data": {"table.yaml": "v2"}})

    def finished() -> dict[str, Any] | None:
        statuses = (
            cluster.get("pod", "watcher", "-n", ns).get("status", {}).get("containerStatuses") or []
        )
        return statuses[0]["state"].get("terminated") if statuses else None

    assert wait_for(finished, "the watcher to see v2", timeout=60)["message"] == "v1->v2"


def test_a_startup_probe_holds_started_and_ready_and_a_node_port_reaches_the_pod(
    cluster: Any, ns: str
) -> None:
    gate = "import os, sys\nsys.exit(0 if os.path.exists('/flag/index.html') else 1)\n"
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "slow", "namespace": ns, "labels": {"app": "slow"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": SERVER,
                        "command": ["python", "-m", "http.server", "8000", "--directory", "/flag"],
                        "startupProbe": {
                            "exec": {"command": python(gate)},
                            "periodSeconds": 1,
                            "failureThreshold": 120,
                        },
                        "volumeMounts": [{"name": "flag", "mountPath": "/flag"}],
                    }
                ],
                "volumes": [{"name": "flag", "emptyDir": {}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "slow", "namespace": ns},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "slow"},
                "ports": [{"port": 80, "targetPort": 8000}],
            },
        },
    )

    def container(started: bool) -> dict[str, Any] | None:
        pod = cluster.get("pod", "slow", "-n", ns)
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if (
            not statuses
            or "running" not in statuses[0]["state"]
            or statuses[0]["started"] is not started
        ):
            return None
        return pod

    pod = wait_for(lambda: container(False), "the container to run, not started")
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    flag = (
        cluster.state_dir
        / "pods"
        / f"{ns}_slow_{pod['metadata']['uid']}"
        / "volumes"
        / "flag"
        / "index.html"
    )
    flag.write_text("awake")
    pod = wait_for(lambda: container(True), "the startup probe to pass")
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "pod/slow", "--timeout=120s", timeout=150
    )
    node_port = cluster.get("service", "slow", "-n", ns)["spec"]["ports"][0]["nodePort"]
    node = cluster.get("node", cluster.node_name)
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert (
        wait_for(lambda: _get_or_none(f"http://{node_ip}:{node_port}/"), "the NodePort to answer")
        == b"awake"
    )


def test_active_deadline_seconds_stops_the_pod_and_fails_it(cluster: Any, ns: str) -> None:
    sleeper = "import time\nprint('started', flush=True)\nwhile True: time.sleep(1)\n"
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "bounded", "namespace": ns},
            "spec": {
                "activeDeadlineSeconds": 3,
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "main", "image": TRAINER, "command": python(sleeper)}],
            },
        },
    )
    failed = wait_for(
        lambda: (
            (p := cluster.get("pod", "bounded", "-n", ns)).get("status", {}).get("phase")
            == "Failed"
            and p
        ),
        "the pod to fail past its deadline",
        timeout=60,
    )
    assert failed["status"]["reason"] == "DeadlineExceeded"
    state = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 128 + signal.SIGTERM
    assert failed["status"]["containerStatuses"][0]["restartCount"] == 0


def test_kubectl_logs_current_previous_and_follow(cluster: Any, ns: str) -> None:
    runs = (
        "import os\n"
        "n = len(os.listdir('/scratch')); open(f'/scratch/{n}', 'w').close()\n"
        "print(f'run {n}', flush=True)\n"
        "raise SystemExit(0 if n == 1 else 1)\n"
    )
    ticks = "import time\nfor i in range(4):\n    print('tick', i, flush=True); time.sleep(0.5)\n"
    scratch = [{"name": "scratch", "mountPath": "/scratch"}]
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "twice", "namespace": ns},
            "spec": {
                "restartPolicy": "OnFailure",
                "containers": [
                    {
                        "name": "main",
                        "image": TRAINER,
                        "command": python(runs),
                        "volumeMounts": scratch,
                    }
                ],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "ticker", "namespace": ns},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": TRAINER, "command": python(ticks)}],
            },
        },
    )
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "pod/ticker", "--timeout=120s", timeout=150
    )
    followed = cluster.kubectl(
        "logs", "-f", "ticker", "-n", ns, timeout=60
    )  # returns when it exits
    assert followed.stdout == "".join(f"tick {i}\n" for i in range(4))
    wait_for(
        lambda: cluster.get("pod", "twice", "-n", ns).get("status", {}).get("phase") == "Succeeded",
        "the second run to succeed",
    )
    assert cluster.kubectl("logs", "twice", "-n", ns).stdout == "run 1\n"
    assert cluster.kubectl("logs", "twice", "-n", ns, "--previous").stdout == "run 0\n"
    assert cluster.kubectl("logs", "ticker", "-n", ns, "--tail=1").stdout == "tick 3\n"


def test_a_readiness_gate_holds_ready_and_other_writers_conditions_are_kept(
    cluster: Any, ns: str
) -> None:
    sleeper = "import time\nwhile True: time.sleep(1)\n"
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "gated-by-lb", "namespace": ns},
            "spec": {
                "readinessGates": [{"conditionType": "example.com/load-balancer"}],
                "containers": [{"name": "main", "image": TRAINER, "command": python(sleeper)}],
            },
        },
    )

    def condition(kind: str) -> dict[str, Any] | None:
        pod = cluster.get("pod", "gated-by-lb", "-n", ns)
        return next(
            (c for c in pod.get("status", {}).get("conditions", []) if c["type"] == kind), None
        )

    wait_for(
        lambda: (c := condition("ContainersReady")) and c["status"] == "True",
        "the containers to be ready",
    )
    ready = condition("Ready")
    assert ready is not None and (ready["status"], ready.get("reason")) == (
        "False",
        "ReadinessGatesNotReady",
    )
    gate = {"type": "example.com/load-balancer", "status": "True"}
    cluster.kubectl(
        "patch",
        "pod",
        "gated-by-lb",
        "-n",
        ns,
        "--subresource=status",
        "-p",
        json.dumps({"status": {"conditions": [gate]}}),
    )
    wait_for(
        lambda: (c := condition("Ready")) and c["status"] == "True", "Ready once the gate is True"
    )
    kept = condition("example.com/load-balancer")
    assert kept is not None and kept["status"] == "True"
