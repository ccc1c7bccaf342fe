"""A change of the watched (stable) version: the previous version's verdict goes, the
new version's first window starts from its own counters, retrain bookkeeping stays."""

from __future__ import annotations

from typing import Any

import pytest

from pilotage.api.driftmonitor import DriftMonitor
from pilotage.control import drift_signal
from pilotage.control.types import DriftMonitorObservation, FeedbackStats
from tests.control.factories import deployment
from tests.control.test_driftmonitor import BASELINE, Server, created, monitor, step

COOLDOWN_S = 600  # monitor()'s onDrift.cooldown: 10m


def watching(version: str, server: Server, **kwargs: Any) -> DriftMonitorObservation:
    return DriftMonitorObservation(
        deployment=deployment(),
        version=version,
        baseline=BASELINE,
        counters=(server.counters(),),
        **kwargs,
    )


def v1_drifted_and_retrained() -> tuple[DriftMonitor, Server]:
    """v1 drifted (one retrain created at t=60); its server then keeps the counts."""
    v1 = Server()
    dm, _ = step(monitor(), watching("v1", v1), 0)
    v1.send(400, shifted=True)
    dm, result = step(dm, watching("v1", v1), 60)
    assert dm.status is not None and dm.status.phase == "Drifting"
    assert len(created(result)) == 1
    return dm, v1


def v2_promoted() -> tuple[DriftMonitor, Server]:
    """v1 drifted and retrained, then v2 (with 50 rows already served) became stable."""
    dm, _ = v1_drifted_and_retrained()
    v2 = Server()
    v2.send(50, shifted=False)
    dm, _ = step(dm, watching("v2", v2), 120)
    return dm, v2


RESET = [
    ("phase", "InsufficientData"),
    ("version", "v2"),
    ("message", "collecting the first window of v2"),
    ("samples", 0),
    ("features", []),
    ("dataset_drift", False),
    ("drift_score", None),
    ("prediction_drift", None),
    ("consecutive_drifting", 0),
    ("last_check_time", None),
]
KEPT = [
    ("retrains", 1),
    ("last_retrain.name", "iris-dm-retrain-1"),
    ("last_retrain.time", "2026-01-01T00:01:00Z"),
]


def field_of(dm: DriftMonitor, dotted: str) -> Any:
    value: Any = dm.status
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


@pytest.mark.parametrize(("field", "expected"), RESET + KEPT, ids=[f for f, _ in RESET + KEPT])
def test_status_after_the_watched_version_changes(field: str, expected: Any) -> None:
    dm, _ = v2_promoted()
    assert field_of(dm, field) == expected


def test_the_checkpoint_restarts_from_the_new_versions_counters() -> None:
    dm, v2 = v2_promoted()
    assert dm.status is not None and dm.status.checkpoint is not None
    checkpoint = dm.status.checkpoint
    assert checkpoint["version"] == "v2" and checkpoint["time"] == "2026-01-01T00:02:00Z"
    assert checkpoint["counts"]["pod-1"]["a"] == v2.counters().features["a"]
    assert "driftingSince" not in checkpoint and "retrainedFor" not in checkpoint


def test_a_deployment_hears_nothing_until_the_new_version_is_judged() -> None:
    dm, v2 = v2_promoted()
    assert drift_signal(dm) is None
    v2.send(200, shifted=False)
    dm, _ = step(dm, watching("v2", v2), 180)
    signal = drift_signal(dm)
    assert signal is not None and signal.version == "v2"
    assert not signal.drifting and signal.score == 0.0
    assert dm.status is not None and dm.status.samples == 200  # v2's rows only


# (seconds since v1's retrain at t=60 when v2's window drifts, retrains created)
COOLDOWN_CASES = [
    pytest.param(COOLDOWN_S - 60, 0, id="inside-the-cooldown"),
    pytest.param(COOLDOWN_S + 1, 1, id="after-the-cooldown"),
]


@pytest.mark.parametrize(("after_retrain", "retrains"), COOLDOWN_CASES)
def test_the_cooldown_holds_across_the_version_change(after_retrain: float, retrains: int) -> None:
    dm, v2 = v2_promoted()
    v2.send(400, shifted=True)
    dm, result = step(dm, watching("v2", v2), 60 + after_retrain)
    assert dm.status is not None and dm.status.phase == "Drifting"
    assert len(created(result)) == retrains
    if retrains == 0:
        assert "retrain waits for the cooldown" in dm.status.message


def test_live_quality_is_measured_from_the_new_versions_feedback() -> None:
    """v2's feedback counters are its own: measured against v1's checkpoint they would
    read (100-90)/(160-100) correct and retrain for an accuracy drop that never was."""
    perf = {"metric": "accuracy", "min": 0.8, "minSamples": 50}
    v1, v2 = Server(), Server()
    dm, _ = step(monitor(performance=perf), watching("v1", v1, feedback=FeedbackStats()), 0)
    good = FeedbackStats(labelled=100, correct=90)
    dm, result = step(dm, watching("v1", v1, feedback=good), 10)
    assert dm.status is not None and dm.status.live is not None and created(result) == []
    v2_feedback = FeedbackStats(labelled=160, correct=100)
    dm, result = step(dm, watching("v2", v2, feedback=v2_feedback), 20)
    assert created(result) == [] and dm.status is not None and dm.status.live is None
    worse = FeedbackStats(labelled=220, correct=110)
    dm, result = step(dm, watching("v2", v2, feedback=worse), 30)
    assert dm.status is not None and dm.status.live is not None
    assert dm.status.live.accuracy == pytest.approx(10 / 60)
    [action] = created(result)
    assert action.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "performance"
