"""`pilotage apply|get|describe|delete|promote|abort|retry|retrain|refresh` on a local state
directory."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.api import parse_resource
from pilotage.local import cli
from pilotage.local.store import Store
from tests.support.procs import pilotage

MANIFESTS = """\
apiVersion: pilotage.dev/v1alpha1
kind: Dataset
metadata: {name: iris}
spec:
  source: {uri: "builtin://iris"}
  target: target
---
apiVersion: pilotage.dev/v1alpha1
kind: TrainingJob
metadata: {name: iris-v1}
spec:
  datasetRef: {name: iris}
  model: {algorithm: logistic_regression}
---
apiVersion: pilotage.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris}
spec:
  model: {trainingJobRef: {name: iris-v1}}
"""
DOCS: dict[str, dict[str, Any]] = {d["kind"]: d for d in yaml.safe_load_all(MANIFESTS)}
DOCS["DriftMonitor"] = {
    "apiVersion": "pilotage.dev/v1alpha1",
    "kind": "DriftMonitor",
    "metadata": {"name": "iris"},
    "spec": {"deploymentRef": {"name": "iris"}},
}


def run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pilotage(*args, "--state-dir", str(state)),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(MANIFESTS)
    return path


def test_apply_get_describe_delete(tmp_path: Path, manifests: Path) -> None:
    state = tmp_path / "state"
    out = run(state, "apply", "-f", str(manifests))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "dataset/iris created",
        "trainingjob/iris-v1 created",
        "modeldeployment/iris created",
    ]
    again = run(state, "apply", "-f", str(manifests))
    assert "dataset/iris unchanged" in again.stdout

    listed = run(state, "get", "tj")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split()[:3] == ["NAME", "PHASE", "VERSION"]
    assert listed.stdout.splitlines()[1].startswith("iris-v1")

    doc = json.loads(run(state, "get", "md", "iris", "-o", "json").stdout)
    assert doc["metadata"]["generation"] == 1
    assert doc["spec"]["model"]["trainingJobRef"]["name"] == "iris-v1"

    described = run(state, "describe", "dataset", "iris")
    assert "builtin://iris" in described.stdout
    assert "Events:" in described.stdout

    gone = run(state, "delete", "md", "iris")
    assert gone.stdout.strip() == "modeldeployment/iris deleted"
    missing = run(state, "get", "md", "iris")
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_apply_reports_each_error_on_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        MANIFESTS.replace("logistic_regression", "magic_forest").replace(
            "trainingJobRef: {name: iris-v1}", "trainingJobRef: {name: iris-v1}, uri: 'file:///x'"
        )
    )
    out = run(tmp_path / "state", "apply", "-f", str(bad))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert any("TrainingJob/iris-v1" in ln and "algorithm" in ln for ln in lines)
    assert any("ModelDeployment/iris" in ln and "exactly one of" in ln for ln in lines)
    assert "Traceback" not in out.stderr
    # nothing was stored: a bad file is all-or-nothing
    assert "No resources found" in run(tmp_path / "state", "get").stdout


def test_unknown_kind_and_missing_file(tmp_path: Path) -> None:
    out = run(tmp_path / "s", "get", "pods")
    assert out.returncode != 0 and "unknown kind 'pods'" in out.stderr
    out = run(tmp_path / "s", "apply", "-f", str(tmp_path / "nope.yaml"))
    assert out.returncode == 1 and "no such file" in out.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe not text", "bad.yaml: not a text file (byte 0 is not UTF-8)"),
        (
            b"kind: Dataset\nmetadata: {name: x\n",
            "bad.yaml: not valid YAML: line 3, column 1: while parsing a flow mapping; "
            "expected ',' or '}', but got '<stream end>'",
        ),
        (b"# nothing but a comment\n", "no resources in "),
    ],
    ids=["binary", "malformed-yaml", "empty"],
)
def test_unusable_manifest_files_are_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    for command in ("apply", "up"):
        out = run(tmp_path / "state", command, "-f", str(bad))
        assert out.returncode == 1
        assert out.stderr.count("\n") == 1, out.stderr
        assert reason in out.stderr


def test_manual_actions_set_fresh_annotation_tokens(tmp_path: Path, manifests: Path) -> None:
    state = tmp_path / "state"
    run(state, "apply", "-f", str(manifests))
    first = run(state, "promote", "iris")
    assert first.returncode == 0, first.stderr
    second = run(state, "promote", "iris", "--full")
    assert second.returncode == 0, second.stderr

    def annotations() -> dict[str, str]:
        doc = json.loads(run(state, "get", "md", "iris", "-o", "json").stdout)
        return dict(doc["metadata"]["annotations"])

    full_once = annotations()["pilotage.dev/promote"]
    # two full promotions in a row are two distinct requests
    assert run(state, "promote", "iris", "--full").returncode == 0
    full_twice = annotations()["pilotage.dev/promote"]
    assert full_once.startswith("full:") and full_twice.startswith("full:")
    assert full_once != full_twice
    assert run(state, "abort", "iris").returncode == 0
    assert run(state, "retry", "iris").returncode == 0
    ann = annotations()
    assert set(ann) == {"pilotage.dev/promote", "pilotage.dev/abort", "pilotage.dev/retry"}
    assert ann["pilotage.dev/abort"] != ann["pilotage.dev/retry"]
    assert ann["pilotage.dev/abort"] not in first.stdout
    missing = run(state, "promote", "nope")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_an_action_with_nothing_to_act_on_is_warned_about(tmp_path: Path, manifests: Path) -> None:
    state = tmp_path / "state"
    run(state, "apply", "-f", str(manifests))
    store = Store(state)
    stable = {"version": "iris-v1", "uri": "file:///m/iris-v1", "trainingJob": "iris-v1"}
    store.write_status("ModelDeployment", "iris", {"phase": "Healthy", "stable": stable})
    warning = "warning: ModelDeployment iris is Healthy, serving iris-v1"
    for command, why in [
        ("promote", "with no rollout in progress"),
        ("abort", "with no rollout in progress"),
        ("retry", "and no version was rolled back or aborted"),
    ]:
        out = run(state, command, "iris")
        assert out.returncode == 0 and "annotated" in out.stdout
        assert out.stderr == (
            f"pilotage {command}: {warning} {why}; the request will have no effect\n"
        )
    candidate = {**stable, "version": "iris-v2", "trainingJob": "iris-v2"}
    rolling = {"phase": "Paused", "stable": stable, "candidate": candidate}
    store.write_status("ModelDeployment", "iris", rolling)
    for command in ("promote", "abort"):
        assert run(state, command, "iris").stderr == ""
    store.write_status("ModelDeployment", "iris", {**rolling, "rejectedVersion": "iris-v3"})
    assert run(state, "retry", "iris").stderr == ""
    # Blue-green after the switch: abort switches back to the previous version.
    switched = {"phase": "Healthy", "stable": candidate, "previous": stable}
    store.write_status("ModelDeployment", "iris", switched)
    assert run(state, "abort", "iris").stderr == ""


def test_kube_without_cluster_is_one_clear_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    out = subprocess.run(
        pilotage("promote", "iris", "--kube"),
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "kubeconfig" in out.stderr


@pytest.mark.parametrize(
    ("command", "kind", "name", "annotation"),
    [
        (cli.retrain, "DriftMonitor", "iris", "pilotage.dev/retrain"),
        (cli.refresh, "Dataset", "iris", "pilotage.dev/refresh"),
    ],
)
def test_retrain_and_refresh_set_a_fresh_token(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: Callable[[list[str]], int],
    kind: str,
    name: str,
    annotation: str,
) -> None:
    state = tmp_path / "state"
    store = Store(state)
    store.apply(parse_resource(DOCS[kind]))
    values = []
    for _ in range(2):
        assert command([name, "--state-dir", str(state)]) == 0
        values.append(store.get(kind, name).metadata.annotations[annotation])
        assert (
            f"{kind.lower()}/{name} annotated {annotation}={values[-1]}" in capsys.readouterr().out
        )
    assert values[0] != values[1]
    assert command(["nope", "--state-dir", str(state)]) == 1
    assert "not found" in capsys.readouterr().err
