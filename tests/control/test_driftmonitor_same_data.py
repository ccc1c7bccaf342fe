"""Issue 17: when the stable version is one this monitor's template trained and the
template's Dataset still holds the very data it learned from, a retrain is not started (it
would be the same model again, rolled out every cooldown); the status says why, and the
retrain starts once the Dataset has new data."""

from __future__ import annotations

from typing import Any

from pilotage.control.types import TrainingJobInfo
from tests.control.test_driftmonitor import Server, created, monitor, observe, step

# The stable version v1 is the monitor's own earlier retrain.
OWN = (
    TrainingJobInfo(
        name="iris-dm-retrain-1",
        labels={"pilotage.dev/monitor": "iris-dm"},
        created=None,
        phase="Succeeded",
        model_version="v1",
    ),
)


def fingerprints(dataset: str, stable: str, jobs: Any = OWN) -> dict[str, Any]:
    return {"dataset_fingerprint": dataset, "stable_fingerprint": stable, "retrain_jobs": jobs}


def test_drift_on_unchanged_data_starts_no_retrain_until_the_data_changes() -> None:
    server = Server()
    same = fingerprints("aa" * 32, "aa" * 32)
    dm, _ = step(monitor(), observe(server, **same), 0)
    server.send(400, shifted=True)
    dm, result = step(dm, observe(server, **same), 60)
    assert dm.status is not None and dm.status.phase == "Drifting"
    assert created(result) == []
    why = dm.status.retrain_not_started
    assert why is not None and "Dataset iris (fingerprint aaaaaaaaaaaa)" in why
    assert "stable version v1 learned from" in why and why in dm.status.message
    assert [e.reason for e in result.events].count("RetrainNotStarted") == 1
    assert dm.status.last_retrain is None

    server.send(400, shifted=True)  # still drifting, still the same data: said once
    dm, result = step(dm, observe(server, **same), 120)
    assert created(result) == [] and "RetrainNotStarted" not in [e.reason for e in result.events]

    server.send(400, shifted=True)  # the Dataset was profiled again with new rows
    fresh = fingerprints("bb" * 32, "aa" * 32)
    dm, result = step(dm, observe(server, **fresh), 180)
    [action] = created(result)
    assert action.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "drift"
    assert dm.status is not None and dm.status.retrain_not_started is None


def test_a_stable_version_trained_elsewhere_retrains_on_the_same_data() -> None:
    """The first drift retrain from a hand-made v1 (another spec, perhaps) goes ahead."""
    server = Server()
    same = fingerprints("aa" * 32, "aa" * 32, jobs=())
    dm, _ = step(monitor(), observe(server, **same), 0)
    server.send(400, shifted=True)
    dm, result = step(dm, observe(server, **same), 60)
    assert len(created(result)) == 1


def test_an_on_demand_retrain_runs_on_unchanged_data() -> None:
    server = Server()
    same = fingerprints("aa" * 32, "aa" * 32)
    dm, _ = step(monitor(), observe(server, **same), 0)
    dm = monitor(annotations={"pilotage.dev/retrain": "r1"}).model_copy(
        update={"status": dm.status}
    )
    dm, result = step(dm, observe(server, **same), 10)
    assert len(created(result)) == 1  # a person asked: the template may have changed
