"""Issue 17, closing the loop with live data on the embedded runtime, all real processes:
requests through the router are logged, ground truth comes through /v1/feedback (half of
it after a restart, when the router no longer remembers the answers), a `logs://` Dataset
materialises the labelled window, and a TrainingJob trains on that snapshot and names it;
then a DriftMonitor's retrain has the snapshot refreshed first (new labels in it), trains
on the fresh one, names it, and is measured against the stable version. The Dataset names
the deployment only (`logs://iris`): the sink is the deployment's."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from pilotage.inferencelog.reader import LogReader
from pilotage.local.store import Store
from tests.support.inference_logs import Log
from tests.support.procs import Process, http_ok, pilotage, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-up")]

API = "pilotage.dev/v1alpha1"
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def serving(sink: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "iris"},
         "spec": {"source": {"uri": "builtin://iris"}, "target": "target"}},
        {"apiVersion": API, "kind": "TrainingJob", "metadata": {"name": "iris-v1"},
         "spec": {"datasetRef": {"name": "iris"},
                  "model": {"algorithm": "logistic_regression"}}},
        {"apiVersion": API, "kind": "ModelDeployment", "metadata": {"name": "iris"},
         "spec": {"model": {"trainingJobRef": {"name": "iris-v1"}},
                  "logging": {"sampleRate": 1.0, "sink": {"uri": sink}}}},
    ]  # fmt: skip


def live() -> list[dict[str, Any]]:
    """The Dataset names the deployment only: its sink is read from the deployment's spec."""
    return [
        {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "iris-live"},
         "spec": {"source": {"uri": "logs://iris", "inferenceLogs": {"window": "1h"}},
                  "target": "target"}},
        {"apiVersion": API, "kind": "TrainingJob", "metadata": {"name": "iris-live-1"},
         "spec": {"datasetRef": {"name": "iris-live"},
                  "model": {"algorithm": "decision_tree"}}},
    ]  # fmt: skip


def monitor() -> dict[str, Any]:
    """A DriftMonitor whose retrain reads the logs; the annotation asks for one now."""
    return {
        "apiVersion": API, "kind": "DriftMonitor",
        "metadata": {"name": "iris-live", "annotations": {"pilotage.dev/retrain": "now"}},
        "spec": {"deploymentRef": {"name": "iris"},
                 "onDrift": {"retrain": {"template": {"spec": {
                     "datasetRef": {"name": "iris-live"},
                     "model": {"algorithm": "decision_tree"}}}}}},
    }  # fmt: skip


def _status(store: Store, kind: str, name: str) -> dict[str, Any]:
    res = store.find(kind, name)
    return dict(res.dump().get("status") or {}) if res else {}


def _post(url: str, doc: Any) -> tuple[str, Any]:
    req = urllib.request.Request(
        url, json.dumps(doc).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers.get("x-pilotage-request-id", ""), json.loads(resp.read())


def _up(state: Path, log: Path, *files: Path) -> Process:
    args = ["up", "--state-dir", str(state), "--interval", "0.1", "--no-dashboard"]
    for f in files:
        args += ["-f", str(f)]
    return Process(pilotage(*args), log)


def _answers(endpoint: str | None) -> bool:
    return bool(endpoint) and http_ok(f"{endpoint}/v1/models/iris")


def _labels_logged(sink: str) -> int:
    end = datetime.now(UTC) + timedelta(minutes=5)
    reader = LogReader(sink, "default", "iris", end - timedelta(hours=2), end, kinds=("label",))
    return sum(1 for _ in reader)


def test_a_retrain_learns_from_the_labelled_logs_and_names_its_snapshot(
    state: Path, tmp_path: Path
) -> None:
    sink = (tmp_path / "logs").as_uri()
    first = tmp_path / "serving.yaml"
    first.write_text("\n---\n".join(json.dumps(d) for d in serving(sink)))
    iris = load_iris()
    picks = list(range(0, 150, 5))  # 30 rows, 10 of each class
    store = Store(state)

    up = _up(state, tmp_path / "up1.log", first)
    try:
        wait_until(
            lambda: _status(store, "ModelDeployment", "iris").get("phase") == "Healthy",
            180, 0.1, "iris serving",
        )  # fmt: skip
        endpoint = _status(store, "ModelDeployment", "iris")["endpoint"]
        sent: dict[str, tuple[list[float], int]] = {}
        for i in picks:
            row = [float(v) for v in iris.data[i]]
            rid, _ = _post(f"{endpoint}/v1/models/iris:predict", {"instances": [row]})
            sent[rid] = (row, int(iris.target[i]))
        ids = list(sent)
        now_labelled = [{"requestId": r, "label": sent[r][1]} for r in ids[:10]]
        _, answer = _post(f"{endpoint}/v1/feedback", {"feedback": now_labelled})
        assert answer["recorded"] == 10
    finally:
        up.stop(30)

    # A new router remembers none of the answers: the labels are "unknown" to it, yet logged.
    up = _up(state, tmp_path / "up2.log")
    try:
        wait_until(
            lambda: _answers(_status(store, "ModelDeployment", "iris").get("endpoint")),
            180, 0.1, "iris serving again",
        )  # fmt: skip
        endpoint = _status(store, "ModelDeployment", "iris")["endpoint"]
        late = [{"requestId": r, "label": sent[r][1]} for r in ids[10:20]]
        _, answer = _post(f"{endpoint}/v1/feedback", {"feedback": late})
        assert (answer["recorded"], answer["unknown"]) == (0, 10)
        wait_until(lambda: _labels_logged(sink) == 20, 30, 0.1, "20 labels in the log")

        second = tmp_path / "live.yaml"
        second.write_text("\n---\n".join(json.dumps(d) for d in live()))
        applied = subprocess.run(
            pilotage("apply", "-f", str(second), "--state-dir", str(state)),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        wait_until(
            lambda: _status(store, "TrainingJob", "iris-live-1").get("phase")
            in ("Succeeded", "Failed"),
            240, 0.2, "the TrainingJob on the logs finished",
        )  # fmt: skip
        first_snapshot = _status(store, "Dataset", "iris-live")["snapshot"]

        # Five more labels, then a retrain: it asks for a fresh snapshot first.
        more = [{"requestId": r, "label": sent[r][1]} for r in ids[20:25]]
        _post(f"{endpoint}/v1/feedback", {"feedback": more})
        wait_until(lambda: _labels_logged(sink) == 25, 30, 0.1, "25 labels in the log")
        third = tmp_path / "monitor.yaml"
        third.write_text(json.dumps(monitor()))
        applied = subprocess.run(
            pilotage("apply", "-f", str(third), "--state-dir", str(state)),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        wait_until(
            lambda: _status(store, "TrainingJob", "iris-live-retrain-1").get("phase")
            in ("Succeeded", "Failed"),
            240, 0.2, "the monitor's retrain finished",
        )  # fmt: skip
    finally:
        up.stop(30)
    retrain = _status(store, "TrainingJob", "iris-live-retrain-1")
    refreshed = _status(store, "Dataset", "iris-live")
    assert retrain["phase"] == "Succeeded", retrain.get("message")
    assert (
        refreshed["refreshRequest"]
        == _status(store, "DriftMonitor", "iris-live")["snapshotRequest"]
    )
    assert (refreshed["snapshot"]["rows"], first_snapshot["rows"]) == (25, 20)
    assert retrain["datasetSnapshot"] == refreshed["snapshot"]
    assert retrain["datasetFingerprint"] == refreshed["fingerprint"]
    # it was measured against the stable version on the same held-out rows
    assert retrain["champion"]["version"] == "iris-v1" and retrain["champion"]["metrics"]

    job = _status(store, "TrainingJob", "iris-live-1")
    assert job["phase"] == "Succeeded", job.get("message")
    snapshot = job["datasetSnapshot"]
    assert snapshot == first_snapshot
    assert (snapshot["rows"], snapshot["labelledRows"], snapshot["requests"]) == (20, 20, 30)
    assert snapshot["sink"] == refreshed["snapshot"]["sink"] == sink  # the deployment's
    frame = pd.read_parquet(Path(snapshot["uri"].removeprefix("file://")))
    assert list(frame.columns) == [*FEATURES, "target"]
    got = sorted((tuple(r[:4]), int(r[4])) for r in frame.itertuples(index=False))
    assert got == sorted((tuple(sent[r][0]), sent[r][1]) for r in ids[:20])


def _apply(state: Path, path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text("\n---\n".join(json.dumps(d) for d in docs))
    applied = subprocess.run(
        pilotage("apply", "-f", str(path), "--state-dir", str(state)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr


def _ready(store: Store, name: str) -> dict[str, Any]:
    conditions = _status(store, "Dataset", name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def test_a_logs_dataset_waits_for_its_deployment_and_a_given_sink_outlives_one(
    state: Path, tmp_path: Path
) -> None:
    """`logs://irs` names no deployment yet: the Dataset says so and starts its profiling
    run by itself once a ModelDeployment `irs` logging to a file sink is applied; `logs://old`
    with its sink given reads the logs a deleted deployment left."""
    iris = load_iris()
    rows = [[float(v) for v in iris.data[i]] for i in range(0, 150, 10)]  # 15 rows
    truths = [int(iris.target[i]) for i in range(0, 150, 10)]
    logs = tmp_path / "logs"
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    labelled: dict[str, set[tuple[tuple[float, ...], int]]] = {}
    for deployment, stride in (("old", 2), ("irs", 3)):
        log = Log(logs, deployment)
        labelled[deployment] = set()
        for i, (row, y) in enumerate(zip(rows, truths, strict=True)):
            log.request(f"{deployment}-{i}", [row], t0 + timedelta(seconds=i))
            if i % stride == 0:
                log.label(f"{deployment}-{i}", y, t0 + timedelta(seconds=i, milliseconds=500))
                labelled[deployment].add((tuple(row), y))
        log.close()
    sink = logs.as_uri()
    datasets = [
        {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "kept"},
         "spec": {"source": {"uri": "logs://old", "inferenceLogs": {"sink": sink}}}},
        {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "typo"},
         "spec": {"source": {"uri": "logs://irs"}}},
    ]  # fmt: skip
    first = tmp_path / "datasets.yaml"
    first.write_text("\n---\n".join(json.dumps(d) for d in datasets))
    store = Store(state)

    up = _up(state, tmp_path / "up.log", first)
    try:
        wait_until(
            lambda: _ready(store, "typo").get("reason") == "LogsNotFound",
            60, 0.1, "the Dataset without a deployment says so",
        )  # fmt: skip
        waiting = _ready(store, "typo")
        assert "no ModelDeployment 'irs'" in waiting["message"], waiting
        assert _status(store, "Dataset", "typo")["phase"] == "Failed"
        wait_until(
            lambda: _status(store, "Dataset", "kept").get("phase") in ("Ready", "Failed"),
            120, 0.2, "the Dataset with a given sink profiled",
        )  # fmt: skip
        # Its model never comes (no such TrainingJob): the Dataset reads only its logging.
        irs = {"apiVersion": API, "kind": "ModelDeployment", "metadata": {"name": "irs"},
               "spec": {"model": {"trainingJobRef": {"name": "not-yet"}},
                        "logging": {"sampleRate": 1.0, "sink": {"uri": sink}}}}  # fmt: skip
        _apply(state, tmp_path / "irs.yaml", [irs])
        wait_until(
            lambda: _status(store, "Dataset", "typo").get("phase") == "Ready",
            120, 0.2, "the Dataset profiled once its deployment logs",
        )  # fmt: skip
    finally:
        up.stop(30)

    for name, deployment in (("kept", "old"), ("typo", "irs")):
        status = _status(store, "Dataset", name)
        assert status["phase"] == "Ready", status
        snapshot = status["snapshot"]
        assert snapshot["sink"] == sink
        frame = pd.read_parquet(Path(snapshot["uri"].removeprefix("file://")))
        got = {(tuple(r[:4]), int(r[4])) for r in frame.itertuples(index=False)}
        assert got == labelled[deployment] and len(frame) == len(labelled[deployment])
