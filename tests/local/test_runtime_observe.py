"""What the local runtime tells the ModelDeployment reconciler about drift when several
DriftMonitors watch one deployment: the most alarming one speaks (as in the operator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotage.api import ModelDeployment, parse_resource
from pilotage.local.up import build_runtime

API = "pilotage.dev/v1alpha1"
CHECKED = "2026-01-01T00:00:00Z"


def monitor(name: str, rollback: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "DriftMonitor",
        "metadata": {"name": name},
        "spec": {"deploymentRef": {"name": "iris"}, "onDrift": {"rollback": rollback}},
    }


def checked(phase: str, score: float, consecutive: int) -> dict[str, Any]:
    return {
        "phase": phase,
        "version": "v1",
        "lastCheckTime": CHECKED,
        "driftScore": score,
        "consecutiveDrifting": consecutive,
        "checkpoint": {"driftingSince": CHECKED} if phase == "Drifting" else {},
    }


DEPLOYMENT = {
    "apiVersion": API,
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {"model": {"trainingJobRef": {"name": "iris-v1"}}},
}


@pytest.mark.parametrize(
    ("statuses", "speaks", "rollback"),
    [
        # the first monitor has not checked yet: the one that did still counts
        ({"a": None, "b": checked("Drifting", 0.5, 1)}, "b", True),
        # drifting with rollback beats drifting without, whatever the order
        ({"a": checked("Drifting", 0.9, 1), "b": checked("Drifting", 0.5, 1)}, "b", True),
        # no one drifts: the highest score is reported (for a drift.maxScore SLO)
        ({"a": checked("Healthy", 0.25, 0), "b": checked("Healthy", 0.0, 0)}, "a", False),
        ({"a": None, "b": None}, None, False),
    ],
)
def test_the_most_alarming_monitor_speaks(
    tmp_path: Path, statuses: dict[str, dict[str, Any] | None], speaks: str | None, rollback: bool
) -> None:
    store, runtime = build_runtime(tmp_path / "state")
    store.apply(parse_resource(DEPLOYMENT))
    store.apply(parse_resource(monitor("a", rollback=False)))
    store.apply(parse_resource(monitor("b")))
    for name, status in statuses.items():
        if status is not None:
            store.write_status("DriftMonitor", name, status)
    md = store.get("ModelDeployment", "iris")
    assert isinstance(md, ModelDeployment)
    signal = runtime.observe(md).drift
    if speaks is None:
        assert signal is None
        return
    assert signal is not None and signal.monitor == speaks and signal.rollback is rollback
    assert signal.version == "v1"  # what the deployment checks against its stable version
