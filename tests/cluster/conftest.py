"""One real control plane per test session (per xdist worker: every module here marks
itself `xdist_group("cluster")`, so one worker runs them all), built from Go modules and started by
`testcluster.up` in a temporary directory, so a cluster a developer started with
`make cluster-up` is never touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testcluster import build
from testcluster.down import down
from testcluster.state import ClusterState
from testcluster.up import up


def checkout_under_tmp() -> bool:
    """Pods mount emptyDirs on /tmp, which hides a checkout under /tmp from the processes
    that stand in for their images (a known limit of the node agent: they exit 127)."""
    return Path("/tmp") in build.REPO.resolve().parents


def unavailable() -> str | None:
    """Why this machine cannot run the test cluster, or None."""
    if checkout_under_tmp():
        return f"the checkout {build.REPO} is under /tmp, which pods mount emptyDirs over"
    if os.geteuid() != 0:
        return "the test cluster needs root (network namespaces for pods)"
    if shutil.which("ip") is None:
        return "the test cluster needs iproute2's `ip`"
    kube, etcd = (
        build.kubernetes_dir(build.DEFAULT_BIN_ROOT),
        build.etcd_dir(build.DEFAULT_BIN_ROOT),
    )
    if shutil.which("go") is None and not (
        (kube / "kube-apiserver").is_file() and (etcd / "etcd").is_file()
    ):
        return "neither the Go toolchain nor built cluster binaries are here (make cluster-bin)"
    return None


@dataclass
class Cluster:
    state: ClusterState
    installed_at: float = 0.0  # when operator_installed ran helm install (time.time())

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    @property
    def directory(self) -> Path:
        return self.state.directory

    @property
    def node_name(self) -> str:
        return self.state.node_name

    @property
    def state_dir(self) -> Path:
        return self.state.directory / "node"

    @property
    def kubectl_path(self) -> Path:
        return build.kubernetes_dir(build.DEFAULT_BIN_ROOT) / "kubectl"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def get_raw_resources(self) -> list[dict[str, Any]]:
        """Every resource the API server's discovery lists: name, group, shortNames."""
        found = []
        for path in ["/api/v1"] + [
            f"/apis/{version['groupVersion']}"
            for group in json.loads(self.kubectl("get", "--raw", "/apis").stdout)["groups"]
            for version in group["versions"]
        ]:
            listing = json.loads(self.kubectl("get", "--raw", path).stdout)
            group = path.split("/")[2] if path.startswith("/apis/") else ""
            found += [
                {"name": r["name"], "group": group, "shortNames": r.get("shortNames", [])}
                for r in listing["resources"]
                if "/" not in r["name"]
            ]
        return found


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true" and not checkout_under_tmp():
            pytest.fail(f"CI must run the cluster tests: {reason}")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("cluster")
    state = up(directory, build.DEFAULT_BIN_ROOT, Path(sys.prefix))
    try:
        yield Cluster(state)
    finally:
        down(directory)


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real `helm` (tests/chart/tools.py fetches it) against the test cluster."""
    from tests.chart.tools import binary

    result = subprocess.run(
        [str(binary("helm")), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


CHART = Path(__file__).resolve().parents[2] / "charts" / "pilotage"


def restricted_namespace(
    cluster: Cluster, name: str, claim: str | None = "pilotage-artifacts"
) -> None:
    """A workload namespace with Pod Security `restricted` enforced and, by default, the
    artifacts claim the chart's default values expect (the node agent binds it)."""
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    if claim:
        claim_doc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": name},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(claim_doc))


def pod_logs(cluster: Cluster, namespace: str, prefix: str, since: float = 0.0) -> str:
    """Every container log of the pods of `namespace` whose name starts with `prefix`,
    started at or after `since` (a time.time()); the directories of earlier pods stay on
    the node after they are deleted."""
    texts = []
    for pod_dir in sorted((cluster.state_dir / "pods").glob(f"{namespace}_{prefix}*")):
        if pod_dir.stat().st_mtime < since:
            continue
        texts += [log.read_text(errors="replace") for log in sorted(pod_dir.glob("*.log"))]
    return "\n".join(texts)


def iris_training_job(
    namespace: str, name: str, model: str, min_accuracy: float | None = None
) -> str:
    """A TrainingJob on the `iris` Dataset, labelled pilotage.dev/model=iris; ``model`` is
    its `spec.model` as flow YAML; with an accuracy gate when given."""
    gate = (
        ""
        if min_accuracy is None
        else f"  evaluation:\n    gates: [{{metric: accuracy, min: {min_accuracy}}}]\n"
    )
    return f"""
apiVersion: pilotage.dev/v1alpha1
kind: TrainingJob
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{pilotage.dev/model: iris}}
spec:
  datasetRef: {{name: iris}}
  task: classification
  model: {model}
{gate}"""


def iris_and_v1(namespace: str, min_accuracy: float | None = None) -> str:
    """The `iris` Dataset and the TrainingJob `iris-v1` (a logistic regression), as YAML
    documents for `kubectl apply`."""
    v1 = "{algorithm: logistic_regression, hyperparameters: {max_iter: 500}}"
    return f"""
apiVersion: pilotage.dev/v1alpha1
kind: Dataset
metadata: {{name: iris, namespace: {namespace}}}
spec:
  source: {{uri: "builtin://iris"}}
  target: target
---{iris_training_job(namespace, "iris-v1", v1, min_accuracy)}"""


RELEASE_NS = "pilotage-system"
OPERATOR_WIDE_S3_SECRET = "pilotage-s3"


def _cluster_phase(item: pytest.Item) -> int:
    """0: the cluster without an operator (CRDs, node agent); 1: test_install.py, which
    installs and uninstalls the release itself; 2: the tests that share the session's
    installed operator, which stays until the session ends."""
    if "operator_installed" in getattr(item, "fixturenames", ()):
        return 2
    return 1 if item.path.name == "test_install.py" else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster tests run in that phase order, whatever their file names (a module
    sorting before test_crds.py that installed the operator made the CRD tests see an
    operator reconciling their objects and test_install.py's install collide with it)."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in item.path.parents]
    ordered = sorted((items[i] for i in slots), key=_cluster_phase)  # stable: file order kept
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="session")
def operator_installed(cluster: Cluster) -> Iterator[Cluster]:
    """The chart installed as a user installs it, with fault injection for the rollback
    drills and a short resync so the tests need not wait for the 30 s default.
    (test_install.py installs and uninstalls the same release on its own, before.)"""
    cluster.installed_at = time.time()
    helm(
        cluster,
        "install", "pilotage", str(CHART),
        "-n", RELEASE_NS, "--create-namespace", "--wait", "--timeout", "180s",
        "--set", "workloads.faultInjection=true",
        "--set-json", "operator.resyncSeconds=2",
        "--set-json", "operator.minIntervalSeconds=0.1",
        # an operator-wide S3 Secret (no namespace holds a right one): test_sources.py
        # shows a Dataset's own Secret is used instead, and the only one its pods get
        "--set-json", f'operator.extraEnv=[{{"name": "PILOTAGE_S3_SECRET", "value": "{OPERATOR_WIDE_S3_SECRET}"}}]',
    )  # fmt: skip
    yield cluster
    helm(cluster, "uninstall", "pilotage", "-n", RELEASE_NS, "--wait", check=False)
