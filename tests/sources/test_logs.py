"""`logs://DEPLOYMENT`: a window of inference logs (written by the router's own record
builders and file sink) materialised by the profiling run into one Parquet snapshot, joined
with labels by request id, and trained on by a TrainingJob through that snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_iris

from pilotage import sources
from pilotage.api.dataset import Dataset, DatasetStatus, DataSource, Snapshot
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.api.trainingjob import TrainingJob
from pilotage.control.dataset import reconcile_dataset
from pilotage.control.trainingjob import reconcile_trainingjob
from pilotage.control.types import DatasetObservation, RunState, StartRun, TrainingJobObservation
from pilotage.trainer.run import profile, train
from tests.support.inference_logs import FEATURES, Log

# Two hours ago, so that the window (now - 24h, now) holds every record written below.
T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=5, second=0, microsecond=0)


def dataset(sink: str, **logs: Any) -> Dataset:
    return Dataset.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "iris-live", "namespace": "default"},
            "spec": {
                "source": {
                    "uri": "logs://iris",
                    "inferenceLogs": {"sink": sink, "window": "24h", **logs},
                },
                "target": "target",
            },
        }
    )


@pytest.fixture
def iris() -> tuple[list[list[float]], list[int]]:
    data = load_iris()
    return [list(map(float, r)) for r in data.data], [int(y) for y in data.target]


@pytest.fixture
def window(tmp_path: Path, iris: tuple[list[list[float]], list[int]]) -> tuple[Log, dict[str, Any]]:
    """60 answered requests over two hours; 40 get a label, 15 of them in a later hour
    partition than their request; plus a shadow answer, a failed request, a torn line."""
    rows, ys = iris
    log = Log(tmp_path / "logs")
    expected: dict[str, Any] = {}
    for i in range(60):
        rid = f"req-{i:03d}"
        row, y = rows[i * 7 % 150], ys[i * 7 % 150]
        log.request(rid, [row], T0 + timedelta(seconds=i))
        if i < 25:
            log.label(rid, y, T0 + timedelta(seconds=i, milliseconds=500))
            expected[rid] = (row, y)
        elif i < 40:
            expected[rid] = (row, y)
    for i in range(25, 40):  # an hour later: another partition
        log.label(f"req-{i:03d}", expected[f"req-{i:03d}"][1], T0 + timedelta(hours=1, seconds=i))
    log.request("req-shadow", [rows[0]], T0 + timedelta(seconds=70), shadow=True)
    log.label("req-shadow", 0, T0 + timedelta(seconds=71))
    log.request("req-failed", [rows[0]], T0 + timedelta(seconds=72), status=500)
    log.label("req-failed", 0, T0 + timedelta(seconds=73))
    log.close()
    newest = max((tmp_path / "logs").rglob("*.jsonl"))
    with newest.open("ab") as f:  # a router killed mid-line
        f.write(b'{"kind": "request", "id": "req-torn", "time": "20')
    return log, expected


def _frame(uri: str) -> pd.DataFrame:
    path = Path(uri.removeprefix("file://"))
    return pd.read_parquet(path)


def test_a_labelled_window_materialises_exactly_the_labelled_requests(
    window: tuple[Log, dict[str, Any]], tmp_path: Path
) -> None:
    log, expected = window
    summary = profile(dataset(log.uri), (tmp_path / "out").as_uri())
    assert summary["phase"] == "Ready", summary["message"]
    snapshot = Snapshot.model_validate(summary["snapshot"])
    assert (snapshot.rows, snapshot.logged_rows, snapshot.labelled_rows) == (40, 40, 40)
    assert (snapshot.requests, snapshot.labels, snapshot.base_rows) == (62, 42, 0)
    assert snapshot.skipped == 3  # the shadow answer, the failed request, the torn line
    frame = _frame(snapshot.uri)
    assert list(frame.columns) == [*FEATURES, "target"]
    got = sorted((tuple(r[:4]), int(r[4])) for r in frame.itertuples(index=False))
    want = sorted((tuple(row), y) for row, y in expected.values())
    assert got == want
    assert summary["rows"] == 40 and summary["task"] == "classification"
    # the fingerprint is the snapshot file's: a TrainingJob reading it finds the same
    assert (
        summary["fingerprint"]
        == sources.source_for(snapshot.uri).load(DataSource(uri=snapshot.uri)).fingerprint
    )


def test_the_same_window_gives_the_same_fingerprint(
    window: tuple[Log, dict[str, Any]], tmp_path: Path
) -> None:
    log, _ = window
    first = profile(dataset(log.uri), (tmp_path / "a").as_uri())
    again = profile(dataset(log.uri), (tmp_path / "b").as_uri())
    assert first["fingerprint"] == again["fingerprint"]
    more = Log(tmp_path / "logs")
    more.request("req-new", [[5.0, 3.4, 1.5, 0.2]], T0 + timedelta(minutes=30))
    more.label("req-new", 0, T0 + timedelta(minutes=31))
    more.close()
    grown = profile(dataset(log.uri), (tmp_path / "c").as_uri())
    assert grown["snapshot"]["rows"] == 41
    assert grown["fingerprint"] != first["fingerprint"]


def test_all_rows_for_profiling_and_a_base_appended(
    window: tuple[Log, dict[str, Any]], tmp_path: Path
) -> None:
    log, _ = window
    every = profile(dataset(log.uri, labelled=False), (tmp_path / "all").as_uri())
    assert every["phase"] == "Ready", every["message"]
    assert (every["snapshot"]["rows"], every["snapshot"]["labelledRows"]) == (60, 40)
    assert int(_frame(every["snapshot"]["uri"])["target"].isna().sum()) == 20

    based = profile(dataset(log.uri, base={"uri": "builtin://iris"}), (tmp_path / "base").as_uri())
    assert based["phase"] == "Ready", based["message"]
    assert (based["snapshot"]["rows"], based["snapshot"]["baseRows"]) == (190, 150)
    frame = _frame(based["snapshot"]["uri"])
    assert frame["target"].dtype.kind == "i" and frame["target"].notna().all()


def test_a_multi_row_request_joins_its_list_label(tmp_path: Path) -> None:
    log = Log(tmp_path / "logs")
    log.request("many", [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], T0)
    log.label("many", [0, 2], T0 + timedelta(hours=1))
    log.request("misfit", [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], T0)
    log.label("misfit", 0, T0 + timedelta(hours=1))  # one label for two rows: left out
    log.request("one", [[5.9, 3.0, 4.2, 1.5]], T0)
    log.label("one", 1, T0)
    log.label("one", 2, T0 + timedelta(minutes=1))  # a correction: the later label wins
    log.close()
    summary = profile(dataset(log.uri), (tmp_path / "out").as_uri())
    snapshot = summary["snapshot"]
    assert (snapshot["rows"], snapshot["skipped"]) == (3, 1)
    frame = _frame(snapshot["uri"])
    assert sorted(frame["target"].tolist()) == [0, 2, 2]


def test_an_empty_window_and_too_many_labels_fail_the_profile_with_the_reason(
    window: tuple[Log, dict[str, Any]], tmp_path: Path
) -> None:
    log, _ = window
    empty = profile(dataset((tmp_path / "nothing").as_uri()), (tmp_path / "o1").as_uri())
    assert empty["phase"] == "Failed"
    assert empty["message"].startswith("no labelled rows in the logs of default/iris")
    over = profile(dataset(log.uri, maxLabels=10), (tmp_path / "o2").as_uri())
    assert over["phase"] == "Failed"
    assert "maxLabels" in over["message"] and "more than 10 labels" in over["message"]


@pytest.mark.parametrize(
    ("source", "fault"),
    [
        (
            {"uri": "builtin://iris", "inferenceLogs": {"sink": "file:///l"}},
            "inferenceLogs: only a logs:// source takes it",
        ),
        (
            {"uri": "logs://iris/x", "inferenceLogs": {"sink": "file:///l"}},
            "must name one ModelDeployment",
        ),
        (
            {"uri": "logs://iris", "inferenceLogs": {"sink": "https://collector/x"}},
            "inferenceLogs.sink: 'https://collector/x' cannot be read back",
        ),
        (
            {
                "uri": "logs://iris",
                "inferenceLogs": {"sink": "file:///l", "base": {"uri": "logs://other"}},
            },
            "inferenceLogs.base.uri: the base cannot be logs:// itself",
        ),
        (
            {
                "uri": "logs://iris",
                "inferenceLogs": {"sink": "file:///l", "base": {"uri": "builtin://nope"}},
            },
            "inferenceLogs.base.uri: unknown builtin data set 'nope'",
        ),
        (
            {"uri": "logs://iris", "format": "csv", "inferenceLogs": {"sink": "file:///l"}},
            "spec.source.format: a logs:// source is read as log records",
        ),
    ],
)
def test_a_bad_logs_source_is_named(source: dict[str, Any], fault: str) -> None:
    try:
        parsed = DataSource.model_validate(source)
    except ValidationError as exc:
        assert fault.removeprefix("spec.source.") in str(exc)
        return
    problem = sources.spec_problem(parsed)
    assert problem is not None and fault in problem


def test_logs_alone_is_a_usable_source_that_reads_the_deployments_sink() -> None:
    source = DataSource.model_validate({"uri": "logs://iris"})
    assert sources.spec_problem(source) is None
    assert sources.deployment_read(source) == "iris"
    given = DataSource.model_validate({"uri": "logs://iris", "inferenceLogs": {"sink": "s3://b/l"}})
    assert sources.deployment_read(given) is None  # a given sink wins: no deployment needed
    # Unresolved, it mounts nothing (the resolved source is what a run's pod gets).
    assert sources.source_for(source.uri).access(source) == sources.Access()


def test_a_run_without_a_resolved_sink_fails_naming_it(tmp_path: Path) -> None:
    unresolved = dataset("file:///unused")
    unresolved.spec.source.inference_logs = None  # `logs://iris` alone, run without a plane
    summary = profile(unresolved, (tmp_path / "out").as_uri())
    assert summary["phase"] == "Failed"
    assert summary["message"].startswith("spec.source.inferenceLogs.sink: not given")


def test_the_sink_and_the_base_reach_the_run() -> None:
    source = DataSource.model_validate(
        {
            "uri": "logs://iris",
            "inferenceLogs": {"sink": "pvc://logs/inference", "base": {"uri": "s3://b/k.csv"}},
        }
    )
    access = sources.source_for(source.uri).access(source)
    assert access.claims == ("logs",) and access.s3


NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def _trained_on(ds: Dataset, algorithm: str, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """A TrainingJob of ``ds`` reconciled, and its run's summary (trained in-process)."""
    tj = TrainingJob.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "iris-live-1", "namespace": "default", "generation": 1},
            "spec": {"datasetRef": {"name": "iris-live"}, "model": {"algorithm": algorithm}},
        }
    )
    obs = TrainingJobObservation(dataset=ds, run=None, artifact_uri=(tmp_path / "a").as_uri())
    started = reconcile_trainingjob(tj, obs, NOW)
    (start,) = [a for a in started.actions if isinstance(a, StartRun)]
    manifest_ds, manifest_tj = start.manifests
    summary = train(
        Dataset.model_validate(manifest_ds),
        TrainingJob.model_validate(manifest_tj),
        start.output_uri,
    )
    return started, summary


def test_the_profile_status_names_the_snapshot_and_a_trainingjob_trains_on_it(
    window: tuple[Log, dict[str, Any]], tmp_path: Path
) -> None:
    log, expected = window
    ds = dataset(log.uri)
    ds.metadata.generation = 1
    first = reconcile_dataset(ds, DatasetObservation(run=None, artifact_uri="file:///a"), NOW)
    (run,) = [a for a in first.actions if isinstance(a, StartRun)]
    summary = profile(ds, (tmp_path / "profile").as_uri())
    ds.status = first.status
    done = RunState(name=run.name, phase="Succeeded", result=summary, finished=NOW)
    ready = reconcile_dataset(ds, DatasetObservation(run=done, artifact_uri="file:///a"), NOW)
    assert ready.status.phase == "Ready"
    assert ready.status.snapshot is not None and ready.status.snapshot.rows == len(expected)
    ds.status = DatasetStatus.model_validate(ready.status.model_dump())

    started, result = _trained_on(ds, "logistic_regression", tmp_path)
    (start,) = [a for a in started.actions if isinstance(a, StartRun)]
    assert start.data[0].uri == ready.status.snapshot.uri
    assert started.status.dataset_snapshot == ready.status.snapshot
    assert result["phase"] == "Succeeded", result["message"]
    assert result["datasetFingerprint"] == ready.status.fingerprint


def test_the_sink_resolved_from_the_deployment_is_what_the_profile_reads_and_names(
    window: tuple[Log, dict[str, Any]], tmp_path: Path
) -> None:
    log, expected = window
    ds = dataset(log.uri)
    ds.spec.source.inference_logs = None  # `uri: logs://iris` alone, not even a target
    ds.spec.target = None
    ds.metadata.generation = 1
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris", "namespace": "default"},
            "spec": {
                "model": {"uri": "file:///models/iris"},
                "logging": {"sampleRate": 1.0, "sink": {"uri": log.uri}},
            },
        }
    )
    seen = DatasetObservation(run=None, artifact_uri="file:///a", deployment=md)
    first = reconcile_dataset(ds, seen, NOW)
    (run,) = [a for a in first.actions if isinstance(a, StartRun)]
    # The window of the default is 168h: the fixture's records (T0) are in it.
    summary = profile(Dataset.model_validate(run.manifests[0]), (tmp_path / "profile").as_uri())
    assert summary["phase"] == "Ready", summary.get("message")
    assert summary["snapshot"]["sink"] == log.uri
    assert summary["snapshot"]["labelledRows"] == len(expected)
    ds.status = first.status
    done = RunState(name=run.name, phase="Succeeded", result=summary, finished=NOW)
    ready = reconcile_dataset(ds, DatasetObservation(run=done, artifact_uri="file:///a"), NOW)
    assert ready.status.phase == "Ready"
    assert ready.status.snapshot is not None and ready.status.snapshot.sink == log.uri
    assert ready.status.target == "target"
    # A TrainingJob trains on the snapshot with the source's default target.
    ds.status = DatasetStatus.model_validate(ready.status.model_dump())
    _, trained = _trained_on(ds, "decision_tree", tmp_path)
    assert trained["phase"] == "Succeeded", trained["message"]
    assert trained["datasetFingerprint"] == ready.status.fingerprint
