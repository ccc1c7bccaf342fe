"""`pilotage up` passes spec.logging to its router: every request through the endpoint is
logged to the file sink with the deployment's namespace and version, feedback labels too,
and status.logging counts what was written."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pilotage.inferencelog.reader import LogReader
from pilotage.local.store import Store
from tests.support.procs import Process, pilotage, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-up")]

API = "pilotage.dev/v1alpha1"


def manifests(sink: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "iris"},
         "spec": {"source": {"uri": "builtin://iris"}, "target": "target"}},
        {"apiVersion": API, "kind": "TrainingJob", "metadata": {"name": "iris-v1"},
         "spec": {"datasetRef": {"name": "iris"},
                  "model": {"algorithm": "logistic_regression"}}},
        {"apiVersion": API, "kind": "ModelDeployment", "metadata": {"name": "iris"},
         "spec": {"model": {"trainingJobRef": {"name": "iris-v1"}},
                  "logging": {"sampleRate": 1.0, "sink": {"uri": sink},
                              "redact": ["petal_width_cm"]}}},
    ]  # fmt: skip


def _status(store: Store) -> dict[str, Any]:
    res = store.find("ModelDeployment", "iris")
    return dict(res.dump().get("status") or {}) if res else {}


def _post(url: str, doc: Any) -> tuple[str, Any]:
    req = urllib.request.Request(
        url, json.dumps(doc).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers.get("x-pilotage-request-id", ""), json.loads(resp.read())


def test_pilotage_up_logs_every_request_and_label(state: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    path = tmp_path / "m.yaml"
    path.write_text("\n---\n".join(json.dumps(d) for d in manifests(logs.as_uri())))
    up = Process(
        pilotage("up", "--state-dir", str(state), "--interval", "0.1", "-f", str(path)),
        tmp_path / "up.log",
    )
    store = Store(state)
    try:
        wait_until(lambda: _status(store).get("phase") == "Healthy", 180, 0.1, "iris serving")
        endpoint = _status(store)["endpoint"]
        ids = [
            _post(f"{endpoint}/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})[0]
            for _ in range(25)
        ]
        _, result = _post(
            f"{endpoint}/v1/feedback", {"feedback": [{"requestId": ids[0], "label": 0}]}
        )
        assert result["recorded"] == 1
        wait_until(
            lambda: (_status(store).get("logging") or {}).get("written") == 25,
            60, 0.1, "status.logging.written == 25",
        )  # fmt: skip
        assert _status(store)["logging"]["dropped"] == 0
    finally:
        up.stop(30)
    end = datetime.now(UTC) + timedelta(minutes=5)
    records = list(LogReader(logs.as_uri(), "default", "iris", end - timedelta(hours=2), end))
    requests = [r for r in records if r["kind"] == "request"]
    assert sorted(r["id"] for r in requests) == sorted(ids)
    assert {(r["namespace"], r["deployment"], r["version"]) for r in requests} == {
        ("default", "iris", "iris-v1")
    }  # fmt: skip
    assert requests[0]["features"] == [
        {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4}
    ]
    assert [(r["id"], r["label"]) for r in records if r["kind"] == "label"] == [(ids[0], 0)]
    for f in logs.rglob("*.jsonl"):
        assert b"petal_width_cm" not in f.read_bytes()
