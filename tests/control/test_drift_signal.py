"""Which of several DriftMonitors speaks for a deployment: the most alarming one."""

from __future__ import annotations

import pytest

from pilotage.control import strongest_drift_signal
from pilotage.control.types import DriftSignal


def sig(
    monitor: str, score: float | None, *, drifting: bool = False, rollback: bool = False
) -> DriftSignal:
    return DriftSignal(monitor, score, drifting=drifting, rollback=rollback, version="v1")


CALM_HIGH = sig("calm-high", 0.4)
CALM_LOW = sig("calm-low", 0.1)
UNSCORED = sig("unscored", None)
DRIFTING = sig("drifting", 0.2, drifting=True)
DRIFTING_HIGH = sig("drifting-high", 0.3, drifting=True)
ROLLBACK = sig("rollback", 0.2, drifting=True, rollback=True)
ROLLBACK_LOW = sig("rollback-low", 0.1, drifting=True, rollback=True)

CASES = [
    pytest.param([], None, id="no-monitor"),
    pytest.param([None, None], None, id="monitors-not-checked-yet"),
    pytest.param([None, CALM_LOW], CALM_LOW, id="one-checked"),
    pytest.param([CALM_LOW, CALM_HIGH], CALM_HIGH, id="higher-score"),
    pytest.param([UNSCORED, CALM_LOW], CALM_LOW, id="a-score-beats-none"),
    pytest.param([CALM_HIGH, DRIFTING], DRIFTING, id="drifting-beats-a-higher-score"),
    pytest.param([DRIFTING, DRIFTING_HIGH], DRIFTING_HIGH, id="higher-score-among-drifting"),
    pytest.param([DRIFTING_HIGH, ROLLBACK_LOW], ROLLBACK_LOW, id="rollback-beats-all"),
    pytest.param([ROLLBACK_LOW, CALM_HIGH, ROLLBACK], ROLLBACK, id="higher-score-among-rollbacks"),
]


@pytest.mark.parametrize(("signals", "expected"), CASES)
def test_the_most_alarming_monitor_decides(
    signals: list[DriftSignal | None], expected: DriftSignal | None
) -> None:
    assert strongest_drift_signal(signals) == expected
    assert strongest_drift_signal(reversed(signals)) == expected  # listing order is irrelevant


def test_equal_signals_are_decided_by_monitor_name() -> None:
    a, b = sig("a", 0.5, drifting=True), sig("b", 0.5, drifting=True)
    assert strongest_drift_signal([b, a]) is a
    assert strongest_drift_signal(iter([a, b])) is a
