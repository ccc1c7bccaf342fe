"""The CRDs against a real kube-apiserver: accepted, and judging manifests as the models do."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.api.files import (
    CRD_DIR,
    InvalidManifest,
    Manifest,
    example_manifests,
    invalid_manifests,
    load_crds,
    names_field,
)
from tests.cluster.conftest import Cluster

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

KINDS = sorted(load_crds())
PLURALS = {kind: crd["spec"]["names"]["plural"] for kind, crd in load_crds().items()}
NAMESPACE = "crd-checks"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "--server-side", "--field-manager=pilotage-tests", "-f", str(CRD_DIR))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{plural}.pilotage.dev" for plural in PLURALS.values()],
    )
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    return cluster


def _dry_run_create(cluster: Cluster, doc: dict[str, object]) -> tuple[bool, str]:
    result = cluster.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        NAMESPACE,
        "-f",
        "-",
        input=json.dumps(doc),
        check=False,
    )
    return result.returncode == 0, result.stderr.strip()


def test_the_crds_are_accepted_structural_and_established(crds: Cluster) -> None:
    for kind, plural in PLURALS.items():
        crd = crds.get(f"crd/{plural}.pilotage.dev")
        conditions = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conditions["Established"]["status"] == "True", kind
        assert conditions["NamesAccepted"]["status"] == "True", kind
        # a non-structural schema is accepted into v1 only with this condition set
        assert "NonStructuralSchema" not in conditions, conditions.get("NonStructuralSchema")


def test_server_side_apply_of_the_crds_is_idempotent(crds: Cluster) -> None:
    again = crds.kubectl(
        "apply", "--server-side", "--field-manager=pilotage-tests", "-f", str(CRD_DIR)
    )
    assert again.stdout.count("serverside-applied") == len(PLURALS), again.stdout


INVALID = invalid_manifests()


@pytest.mark.parametrize("manifest", INVALID, ids=[m.path.stem for m in INVALID])
def test_the_real_server_rejects_each_invalid_manifest_naming_the_field(
    crds: Cluster, manifest: InvalidManifest
) -> None:
    admitted, message = _dry_run_create(crds, manifest.doc)
    assert not admitted, f"{manifest.path.name} ({manifest.why}) was admitted by kube-apiserver"
    assert names_field(message, manifest.field), message


EXAMPLES = [
    m for m in example_manifests() if m.doc.get("apiVersion", "").startswith("pilotage.dev/")
]


@pytest.mark.parametrize("manifest", EXAMPLES, ids=[m.id for m in EXAMPLES])
def test_the_real_server_admits_every_example(crds: Cluster, manifest: Manifest) -> None:
    admitted, message = _dry_run_create(crds, manifest.doc)
    assert admitted, message


def test_defaults_and_printer_columns_through_the_category(crds: Cluster) -> None:
    quickstart = [m.doc for m in EXAMPLES if m.path.name == "quickstart.yaml"]
    assert quickstart
    crds.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(quickstart))
    listing = crds.kubectl("get", "pilotage", "-n", NAMESPACE).stdout
    for doc in quickstart:
        assert doc["metadata"]["name"] in listing, listing
    # each kind prints its own columns; every table has a header row with NAME first
    for kind in {doc["kind"] for doc in quickstart}:
        table = crds.kubectl("get", PLURALS[kind], "-n", NAMESPACE).stdout.splitlines()
        assert table[0].split()[0] == "NAME", table
    short = crds.kubectl("get", "dset,tj,md,dm", "-n", NAMESPACE, "-o", "name").stdout.split()
    assert len(short) == len(quickstart), short
    crds.kubectl("delete", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(quickstart))


@pytest.mark.parametrize("kind", KINDS)
def test_kubectl_explain_describes_the_spec(crds: Cluster, kind: str) -> None:
    text = crds.kubectl("explain", f"{PLURALS[kind]}.spec").stdout
    assert f"KIND:       {kind}" in text or f"KIND:     {kind}" in text, text
    assert "FIELDS:" in text, text


def test_the_status_subresource_is_separate_from_the_spec(crds: Cluster) -> None:
    doc = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "status-split", "namespace": NAMESPACE},
        "spec": {"source": {"uri": "builtin://iris"}, "target": "target"},
    }
    crds.kubectl("apply", "-f", "-", input=json.dumps(doc))
    created = crds.get("dataset/status-split", "-n", NAMESPACE)
    patch = json.dumps({"status": {"phase": "Ready", "observedGeneration": 1}})
    crds.kubectl("patch", "dataset/status-split", "-n", NAMESPACE, "--type=merge", "-p", patch)
    after_main = crds.get("dataset/status-split", "-n", NAMESPACE)
    assert "phase" not in after_main.get("status", {}), "a main-resource patch changed status"
    crds.kubectl(
        "patch",
        "dataset/status-split",
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )
    after_status = crds.get("dataset/status-split", "-n", NAMESPACE)
    assert after_status["status"]["phase"] == "Ready"
    assert after_status["metadata"]["generation"] == created["metadata"]["generation"]
    crds.kubectl("delete", "dataset/status-split", "-n", NAMESPACE)


def test_no_short_name_of_ours_is_taken_by_another_resource(crds: Cluster) -> None:
    """kubectl resolves a short name to the built-in resource first: `ds` is DaemonSet."""
    ours: dict[str, str] = {}
    taken: dict[str, str] = {}
    for resource in crds.get_raw_resources():
        for short in resource["shortNames"]:
            (ours if resource["group"] == "pilotage.dev" else taken)[short] = resource["name"]
    assert ours, "discovery lists no short names of ours"
    clashes = {short: taken[short] for short in ours if short in taken}
    assert clashes == {}, clashes
    for short, plural in ours.items():
        names = crds.kubectl("get", short, "-n", NAMESPACE, "-o", "name").stdout
        assert names == "" or names.startswith(plural.rstrip("s")), (short, names)
