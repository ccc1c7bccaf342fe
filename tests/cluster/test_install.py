"""The chart installed as a user installs it, on the real control plane (issue 14).

`helm install` runs the operator as a pod through the node agent, with in-cluster config
and the chart's ServiceAccount token, under the chart's RBAC as the real API server
enforces it. A Dataset in a namespace with the `restricted` Pod Security Standard
enforced becomes Ready through a real profiling Job: that proves the operator works.
Then `helm upgrade`, one RBAC rule taken away (the failure named in the operator's log
and the resource's status), `helm uninstall` (what stays and what goes, as
docs/operations.md promises) and a namespaced install.

Every test leaves no release behind: the story test of this session installs the chart
under the same release name.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster.conftest import CHART, Cluster, helm, pod_logs, restricted_namespace

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

RELEASE = "pilotage"
SYSTEM = "pilotage-system"
DEPLOYMENT = "pilotage-operator"
ROLE = "pilotage-operator"
FINALIZER = "pilotage.dev/finalizer"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 180.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def dataset(name: str, namespace: str) -> str:
    return json.dumps(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "source": {"uri": "builtin://iris"},
                "target": "target",
                "split": {"testFraction": 0.25, "seed": 7},
            },
        }
    )


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def operator_pods(cluster: Cluster, namespace: str = SYSTEM) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.get(
        "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    return pods


def operator_log(cluster: Cluster, namespace: str = SYSTEM) -> str:
    return pod_logs(cluster, namespace, DEPLOYMENT)


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+")
_HTTP_403 = re.compile(r"\b403\b")


def forbidden_lines(log: str) -> list[str]:
    """Lines that report a refusal: a 403 or "forbidden" outside the line's timestamp
    (``18:20:31,403`` is a millisecond, not a status)."""
    return [
        line
        for line in log.splitlines()
        if _HTTP_403.search(rest := _TIMESTAMP.sub("", line)) or "forbidden" in rest.lower()
    ]


def uninstall(cluster: Cluster, namespace: str = SYSTEM) -> None:
    """helm uninstall (idempotent) and wait until the operator pod is gone."""
    helm(cluster, "uninstall", RELEASE, "-n", namespace, "--wait", check=False)
    wait_for(lambda: not operator_pods(cluster, namespace), "the operator pod to go")


def drop_resources(cluster: Cluster, namespace: str) -> None:
    """Delete a test namespace's Pilotage resources even with no operator left to remove
    their finalizers, then the namespace itself."""
    for kind in ("datasets", "trainingjobs", "modeldeployments", "driftmonitors"):
        for item in cluster.get(kind, "-n", namespace)["items"]:
            name = item["metadata"]["name"]
            cluster.kubectl(
                "patch", kind, name, "-n", namespace, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def ready_dataset(cluster: Cluster, namespace: str, name: str, timeout: float = 240) -> dict:
    """Apply a Dataset and wait, as a user does, for Ready."""
    cluster.kubectl("apply", "-f", "-", input=dataset(name, namespace))
    cluster.kubectl(
        "wait", "--for=condition=Ready", f"dset/{name}", "-n", namespace,
        f"--timeout={int(timeout)}s", timeout=timeout + 30,
    )  # fmt: skip
    got: dict[str, Any] = cluster.get("dset", name, "-n", namespace)
    return got


# ---- cluster-wide install ----------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Iterator[Cluster]:
    """The chart installed cluster-wide with its defaults; uninstalled at the end."""
    try:
        helm(
            cluster, "install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace",
            "--wait", "--timeout=5m",
        )  # fmt: skip
        yield cluster
    finally:
        uninstall(cluster)
        for namespace in ("ml-smoke", "ml-rbac"):
            drop_resources(cluster, namespace)


def assert_no_forbidden(
    cluster: Cluster, namespace: str = SYSTEM, but: str = "", pods: list[str] | None = None
) -> None:
    """The operator's own API calls all succeeded under the chart's RBAC: no 403 in the
    logs of any of its pods, or of `pods` (except lines naming `but`, a refusal a test
    provoked)."""
    if pods is None:
        log = operator_log(cluster, namespace)
    else:
        log = "\n".join(pod_logs(cluster, namespace, pod) for pod in pods)
    lines = [line for line in forbidden_lines(log) if not but or but not in line]
    assert lines == [], "\n".join(lines[:10])


def test_install_runs_the_operator_as_a_pod_and_a_dataset_becomes_ready(
    installed: Cluster,
) -> None:
    cluster = installed
    # `helm install --wait` returned once the operator served /healthz (readiness probe;
    # the liveness probe starts after 10 s): the chart's Ready means the operator is up
    assert "GET /healthz" in operator_log(cluster)
    [pod] = operator_pods(cluster)
    assert pod["status"]["phase"] == "Running"
    assert condition(pod, "Ready")["status"] == "True"
    assert pod["spec"]["serviceAccountName"] == "pilotage"
    container = pod["spec"]["containers"][0]
    # the chart's ServiceAccount token, mounted by the real service-account admission
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
    assert "/pilotage-operator:" in container["image"]
    # in-cluster config: no kubeconfig anywhere, only the token (test 3 sees the API
    # server name the chart's ServiceAccount as the caller)
    assert "KUBECONFIG" not in {e["name"] for e in container.get("env", [])}

    restricted_namespace(cluster, "ml-smoke")
    ds = ready_dataset(cluster, "ml-smoke", "iris")
    assert ds["status"]["rows"] == 150
    assert FINALIZER in ds["metadata"]["finalizers"]
    # profiled by a real Job, run by the Job controller under `restricted`
    [job] = cluster.get("jobs", "-n", "ml-smoke")["items"]
    assert job["status"].get("succeeded") == 1
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Dataset", "iris")
    assert "Handler 'reconcile-datasets' succeeded" in operator_log(cluster)
    assert_no_forbidden(cluster)


def test_helm_upgrade_replaces_the_operator_pod_and_resources_keep_working(
    installed: Cluster,
) -> None:
    cluster = installed
    [before] = operator_pods(cluster)
    helm(
        cluster, "upgrade", RELEASE, str(CHART), "-n", SYSTEM, "--reuse-values",
        "--set", "operator.logLevel=debug", "--wait", "--timeout=5m",
    )  # fmt: skip
    wait_for(
        lambda: (
            [p["metadata"]["uid"] for p in operator_pods(cluster)]
            not in ([], [before["metadata"]["uid"]])
        ),
        "a new operator pod",
    )
    [after] = operator_pods(cluster)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["spec"]["containers"][0]["args"] == ["operator", "--log-level", "debug"]
    settings = cluster.get("configmap", "pilotage-settings", "-n", SYSTEM)
    assert settings["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    revision = json.loads(helm(cluster, "status", RELEASE, "-n", SYSTEM, "-o", "json").stdout)
    assert revision["version"] == 2

    # what existed stays as it was (no second profiling run), what is new reconciles
    ds = ready_dataset(cluster, "ml-smoke", "iris-after-upgrade")
    assert ds["status"]["rows"] == 150
    iris = cluster.get("dset", "iris", "-n", "ml-smoke")
    assert condition(iris, "Ready")["status"] == "True"
    jobs = sorted(j["metadata"]["name"] for j in cluster.get("jobs", "-n", "ml-smoke")["items"])
    assert jobs == ["iris-after-upgrade-profile-g1", "iris-profile-g1"]
    new_log = pod_logs(cluster, SYSTEM, after["metadata"]["name"])
    assert " DEBUG " in new_log and "iris-after-upgrade" in new_log
    assert_no_forbidden(cluster)


def test_a_rule_taken_from_the_cluster_role_is_named_in_the_log_and_the_status(
    installed: Cluster,
) -> None:
    cluster = installed
    role = cluster.get("clusterrole", ROLE)
    original = json.dumps(
        {k: role[k] for k in ("apiVersion", "kind", "rules")}
        | {
            "metadata": {
                "name": ROLE,
                "labels": role["metadata"]["labels"],
                "annotations": role["metadata"].get("annotations", {}),
            }
        }
    )
    cut = json.loads(original)
    [jobs_rule] = [r for r in cut["rules"] if r["apiGroups"] == ["batch"]]
    jobs_rule["verbs"].remove("create")
    cluster.kubectl("replace", "-f", "-", input=json.dumps(cut))
    restricted_namespace(cluster, "ml-rbac")
    try:
        cluster.kubectl("apply", "-f", "-", input=dataset("iris", "ml-rbac"))
        ready = wait_for(
            lambda: (
                condition(cluster.get("dset", "iris", "-n", "ml-rbac"), "Ready").get("reason")
                == "Forbidden"
                and condition(cluster.get("dset", "iris", "-n", "ml-rbac"), "Ready")
            ),
            "Ready=False/Forbidden on the Dataset",
        )
        assert ready["status"] == "False"
        assert "may not create batch/jobs in namespace ml-rbac" in ready["message"]
        assert 'User "system:serviceaccount:pilotage-system:pilotage"' in ready["message"]
        assert (
            condition(cluster.get("dset", "iris", "-n", "ml-rbac"), "Stalled")["status"] == "True"
        )
        events = cluster.get("events", "-n", "ml-rbac", "--field-selector", "reason=Forbidden")[
            "items"
        ]
        assert [e["involvedObject"]["name"] for e in events] == ["iris"]
        assert cluster.get("jobs", "-n", "ml-rbac")["items"] == []
        logged = wait_for(
            lambda: [line for line in forbidden_lines(operator_log(cluster)) if "ml-rbac" in line],
            "the refusal in the operator's log",
        )
        assert "may not create batch/jobs in namespace ml-rbac" in logged[0]
        assert "WARNING" in logged[0]
    finally:
        cluster.kubectl("replace", "-f", "-", input=original)
    # the permission back: the retry goes through and the condition clears by itself
    ds = ready_dataset(cluster, "ml-rbac", "iris")
    assert condition(ds, "Ready")["reason"] == "Profiled"
    assert_no_forbidden(cluster, but="ml-rbac")


def test_helm_uninstall_removes_the_operator_and_keeps_crds_and_user_resources(
    installed: Cluster,
) -> None:
    cluster = installed
    # as docs/operations.md says: delete resources first, while the operator runs; it
    # removes their finalizers and the garbage collector their Jobs
    cluster.kubectl("delete", "datasets", "--all", "-n", "ml-rbac", "--timeout=120s", timeout=150)
    wait_for(lambda: not cluster.get("jobs", "-n", "ml-rbac")["items"], "the Dataset's Job to go")
    assert_no_forbidden(cluster, but="ml-rbac")

    helm(cluster, "uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout=5m")
    wait_for(lambda: not operator_pods(cluster), "the operator pod to go")
    for kind, name in (
        ("deployment", f"{DEPLOYMENT} -n {SYSTEM}"),
        ("serviceaccount", f"pilotage -n {SYSTEM}"),
        ("configmap", f"pilotage-settings -n {SYSTEM}"),
        ("clusterrole", ROLE),
        ("clusterrolebinding", ROLE),
        ("clusterkopfpeering", "pilotage"),
    ):
        got = cluster.kubectl("get", kind, *name.split(), check=False)
        assert got.returncode != 0 and "NotFound" in got.stderr, f"{kind} {name} was left"
    # Helm leaves the CRDs and with them every user resource and its children
    crds = {c["metadata"]["name"] for c in cluster.get("crd")["items"]}
    assert {
        f"{k}.pilotage.dev"
        for k in ("datasets", "trainingjobs", "modeldeployments", "driftmonitors")
    } <= crds
    kept = cluster.get("dset", "-n", "ml-smoke")["items"]
    assert sorted(d["metadata"]["name"] for d in kept) == ["iris", "iris-after-upgrade"]
    assert all(condition(d, "Ready")["status"] == "True" for d in kept)
    assert len(cluster.get("jobs", "-n", "ml-smoke")["items"]) == 2


# ---- namespaced install -------------------------------------------------------------------


def test_a_namespaced_install_reconciles_its_namespaces_only_and_keeps_the_claim(
    cluster: Cluster,
) -> None:
    watched, unwatched = "ml-watched", "ml-unwatched"
    uninstall(cluster)  # the cluster-wide release, should a test above have failed early
    restricted_namespace(cluster, watched, claim=None)  # the chart creates the claim
    restricted_namespace(cluster, unwatched)
    try:
        helm(
            cluster, "install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace",
            "--set", "watch.clusterWide=false", "--set", f"watch.namespaces={{{watched}}}",
            "--set", "artifacts.pvc.create=true", "--wait", "--timeout=5m",
        )  # fmt: skip
        assert (
            cluster.get("clusterrole", "-l", "app.kubernetes.io/instance=pilotage")["items"] == []
        )
        assert cluster.get("role", ROLE, "-n", watched)["rules"]
        claim = cluster.get("pvc", "pilotage-artifacts", "-n", watched)
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

        cluster.kubectl("apply", "-f", "-", input=dataset("iris", unwatched))
        ds = ready_dataset(cluster, watched, "iris")
        assert ds["status"]["rows"] == 150
        # the operator started after the unwatched Dataset existed and has reconciled the
        # watched one since: it had every chance; the unwatched one is untouched
        ignored = cluster.get("dset", "iris", "-n", unwatched)
        assert "status" not in ignored and not ignored["metadata"].get("finalizers")
        assert cluster.get("jobs", "-n", unwatched)["items"] == []
        # this release's pod only (the cluster-wide release's pods logged in this
        # namespace too: their logs stay on the node)
        pods = [p["metadata"]["name"] for p in operator_pods(cluster)]
        assert all(unwatched not in pod_logs(cluster, SYSTEM, pod) for pod in pods)
        assert_no_forbidden(cluster, pods=pods)

        cluster.kubectl("delete", "dset", "iris", "-n", watched, "--timeout=120s", timeout=150)
        helm(cluster, "uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout=5m")
        wait_for(lambda: not operator_pods(cluster), "the operator pod to go")
        # the claim holds the models: kept; the Role, its binding and the peering go
        kept = cluster.get("pvc", "pilotage-artifacts", "-n", watched)
        assert kept["metadata"]["uid"] == claim["metadata"]["uid"]
        for kind in ("role", "rolebinding"):
            assert cluster.get(kind, "-n", watched)["items"] == [], kind
        assert cluster.get("kopfpeering", "-n", watched)["items"] == []
    finally:
        uninstall(cluster)
        for namespace in (watched, unwatched):
            drop_resources(cluster, namespace)
