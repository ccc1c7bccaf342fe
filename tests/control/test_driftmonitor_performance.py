"""A live-performance breach inside the cooldown is kept pending: when the cooldown ends
a retrain is created for it, unless a healthy feedback window came after it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pilotage.api.driftmonitor import DriftMonitor
from pilotage.control.types import FeedbackStats
from tests.control.test_driftmonitor import Server, created, monitor, observe, step

PERF = {"metric": "accuracy", "min": 0.8, "minSamples": 50}
COOLDOWN_ENDS = 600  # monitor()'s cooldown is 10m, from the manual retrain at 0 s
BAD = (60, 30)  # (labelled, correct): accuracy 0.5
GOOD = (60, 57)  # accuracy 0.95
FEW = (20, 0)  # below minSamples: no window is judged

# (case, feedback windows as (seconds, (labelled, correct)) inside the cooldown or at its
#  end, the triggers of the retrains created when the cooldown has ended)
CASES: list[tuple[str, list[tuple[float, tuple[int, int]]], list[str]]] = [
    ("breach, then no feedback", [(100, BAD)], ["performance"]),
    ("breach, then too few labels to judge", [(100, BAD), (200, FEW)], ["performance"]),
    ("breach, then a healthy window", [(100, BAD), (200, GOOD)], []),
    ("healthy, then a breach", [(100, GOOD), (200, BAD)], ["performance"]),
    ("breach, healthy, breach", [(100, BAD), (200, GOOD), (300, BAD)], ["performance"]),
    ("breach, then healthy as the cooldown ends", [(100, BAD), (COOLDOWN_ENDS + 1, GOOD)], []),
    (
        "breach, then a breach as the cooldown ends",
        [(100, BAD), (COOLDOWN_ENDS + 1, BAD)],
        ["performance"],
    ),
    ("only healthy windows", [(100, GOOD), (200, GOOD)], []),
]


def _manual_retrain_at_zero(server: Server) -> DriftMonitor:
    dm = monitor(annotations={"pilotage.dev/retrain": "r1"}, performance=PERF)
    dm, result = step(dm, observe(server, feedback=FeedbackStats()), 0)
    assert [a.manifest["metadata"]["labels"]["pilotage.dev/trigger"] for a in created(result)] == [
        "manual"
    ]
    return dm


@pytest.mark.parametrize(("case", "windows", "after_cooldown"), CASES, ids=[c[0] for c in CASES])
def test_a_breach_in_the_cooldown_is_kept_until_it_ends(
    case: str, windows: list[tuple[float, tuple[int, int]]], after_cooldown: list[str]
) -> None:
    server = Server()
    dm = _manual_retrain_at_zero(server)
    labelled = correct = 0
    triggers: list[str] = []

    def tick(seconds: float) -> Any:
        nonlocal dm
        feedback = FeedbackStats(labelled=labelled, correct=correct)
        dm, result = step(dm, observe(server, feedback=feedback), seconds)
        return result

    for seconds, (more_labelled, more_correct) in windows:
        labelled += more_labelled
        correct += more_correct
        result = tick(seconds)
        made = created(result)
        if seconds < COOLDOWN_ENDS:
            assert made == [], f"{case}: a retrain inside the cooldown"
        triggers += [a.manifest["metadata"]["labels"]["pilotage.dev/trigger"] for a in made]
    result = tick(COOLDOWN_ENDS + 10)
    triggers += [a.manifest["metadata"]["labels"]["pilotage.dev/trigger"] for a in created(result)]
    assert triggers == after_cooldown, case

    # A breach is acted on once: with no new feedback, the next cooldown's end is quiet.
    result = tick(3 * COOLDOWN_ENDS)
    assert created(result) == [], case
    assert dm.status is not None and "pendingPerformance" not in (dm.status.checkpoint or {})


def test_a_pending_breach_says_it_waits_for_the_cooldown() -> None:
    server = Server()
    dm = _manual_retrain_at_zero(server)
    obs = observe(server, feedback=FeedbackStats(labelled=60, correct=30))
    dm, result = step(dm, obs, 100)
    assert "PerformanceDropped" in [e.reason for e in result.events]
    dm, result = step(dm, obs, 200)  # the same breach, still pending: no second event
    assert "PerformanceDropped" not in [e.reason for e in result.events]
    assert dm.status is not None
    assert "retrain waits for the cooldown (performance" in dm.status.message


def test_a_new_version_drops_the_previous_versions_breach() -> None:
    server = Server()
    dm = _manual_retrain_at_zero(server)
    dm, _ = step(dm, observe(server, feedback=FeedbackStats(labelled=60, correct=30)), 100)
    promoted = replace(
        observe(server, feedback=FeedbackStats(labelled=60, correct=30)), version="v2"
    )
    dm, _ = step(dm, promoted, 200)
    dm, result = step(dm, promoted, COOLDOWN_ENDS + 10)
    assert created(result) == []
