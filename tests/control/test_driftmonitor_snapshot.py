"""Issue 17, retraining on live data: when a retrain's Dataset is read as a snapshot
(`logs://`), the monitor first asks for a fresh one (the Dataset is profiled again), starts
the retrain once it is there, and does not start it when the fresh snapshot holds no new
labelled rows since the last retrain (status and an Event say so)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from pilotage.api.dataset import Snapshot
from pilotage.control.dataset import reconcile_dataset, wanted_run
from pilotage.control.types import DatasetObservation, StartRun, TrainingJobInfo
from tests.control.factories import at, dataset
from tests.control.test_driftmonitor import Server, created, monitor, observe, step

SNAPSHOT = Snapshot(uri="file:///a/snapshot.parquet", rows=120, labelled_rows=120)
LAST = TrainingJobInfo(
    name="iris-dm-retrain-1",
    labels={"pilotage.dev/monitor": "iris-dm"},
    created=at(-3600),
    phase="Succeeded",
    model_version="iris-dm-retrain-1",
    dataset_fingerprint="aa" * 32,
)


def seen(server: Server, **facts: Any) -> Any:
    base = {
        "dataset_snapshots": True,
        "dataset_snapshot": SNAPSHOT,
        "retrain_jobs": (LAST,),
        "dataset_fingerprint": "aa" * 32,
    }
    return replace(observe(server), **{**base, **facts})


def drifting() -> tuple[Server, Any]:
    server = Server()
    dm, _ = step(monitor(), seen(server), 0)
    server.send(400, shifted=True)
    return server, dm


def test_a_retrain_on_a_snapshot_dataset_asks_for_a_fresh_one_first() -> None:
    server, dm = drifting()
    dm, result = step(dm, seen(server), 60)
    assert created(result) == []
    assert dm.status is not None and dm.status.snapshot_request == "2026-01-01T00:01:00Z"
    assert "retrain waits for a fresh snapshot of Dataset iris" in dm.status.message
    assert "SnapshotRequested" in [e.reason for e in result.events]
    token = dm.status.snapshot_request

    # the Dataset is profiled again for it: a new run, which records the request
    ds = dataset(status={"phase": "Ready", "observedGeneration": 1, "run": wanted_run(dataset())})
    obs = DatasetObservation(run=None, artifact_uri="file:///a", refresh=token)
    profiled = reconcile_dataset(ds, obs, at(61))
    [start] = [a for a in profiled.actions if isinstance(a, StartRun)]
    assert start.name != wanted_run(dataset()) and profiled.status.refresh_request == token

    server.send(100, shifted=True)  # still profiling: no retrain yet, asked once
    dm, result = step(dm, seen(server, dataset_answered=None), 62)
    assert created(result) == [] and dm.status.snapshot_request == token
    assert "SnapshotRequested" not in [e.reason for e in result.events]

    server.send(100, shifted=True)  # answered with new labelled rows: the retrain starts
    fresh = seen(server, dataset_answered=token, dataset_fingerprint="bb" * 32)
    dm, result = step(dm, fresh, 70)
    [action] = created(result)
    assert action.manifest["spec"]["datasetRef"] == {"name": "iris"}
    assert dm.status.retrain_not_started is None


def test_no_new_labelled_rows_since_the_last_retrain_starts_none() -> None:
    server, dm = drifting()
    dm, _ = step(dm, seen(server), 60)
    token = dm.status.snapshot_request if dm.status else None
    server.send(100, shifted=True)
    dm, result = step(dm, seen(server, dataset_answered=token), 70)
    assert created(result) == []
    why = dm.status.retrain_not_started if dm.status else None
    assert why == (
        "Dataset iris's fresh snapshot (120 rows, 120 labelled, fingerprint aaaaaaaaaaaa) is "
        "the one retrain iris-dm-retrain-1 learned from: no new labelled rows since"
    )
    assert "RetrainNotStarted" in [e.reason for e in result.events]
    # within the cooldown the same snapshot stands; after it, a new one is asked for
    server.send(100, shifted=True)
    dm, result = step(dm, seen(server, dataset_answered=token), 300)
    assert dm.status is not None and dm.status.snapshot_request == token
    later = 70 + timedelta(minutes=10).total_seconds()
    dm, result = step(dm, seen(server, dataset_answered=token), later)
    assert dm.status is not None and dm.status.snapshot_request != token
    assert "SnapshotRequested" in [e.reason for e in result.events]


def test_a_failed_fresh_snapshot_starts_no_retrain_and_says_why() -> None:
    server, dm = drifting()
    dm, _ = step(dm, seen(server), 60)
    token = dm.status.snapshot_request if dm.status else None
    failed = seen(
        server,
        dataset_answered=token,
        dataset_failed="no labelled rows in the logs of default/iris at file:///l",
        dataset_fingerprint="cc" * 32,
    )
    dm, result = step(dm, failed, 70)
    assert created(result) == [] and dm.status is not None
    assert dm.status.retrain_not_started == (
        "Dataset iris's fresh snapshot failed: no labelled rows in the logs of default/iris "
        "at file:///l"
    )


def test_a_dataset_of_another_source_retrains_at_once() -> None:
    server = Server()
    dm, _ = step(monitor(), observe(server), 0)
    server.send(400, shifted=True)
    dm, result = step(dm, observe(server), 60)
    assert len(created(result)) == 1 and dm.status is not None
    assert dm.status.snapshot_request is None
