"""`pilotage.dev/promote` values: `full` / `full:<token>` promote at once, anything else is
one step; each distinct value acts once, so fresh `full:<token>` values act every time."""

from __future__ import annotations

import pytest

from pilotage.api.modeldeployment import ModelDeployment
from pilotage.control.modeldeployment import is_full_promotion
from tests.control.factories import job, observe, run, with_annotations
from tests.control.test_modeldeployment import CANARY, V1, V2, rolling

V3 = job("v3", 1000)


def stable(md: ModelDeployment) -> str | None:
    assert md.status is not None
    return md.status.stable.version if md.status.stable else None


@pytest.mark.parametrize(
    ("value", "full"),
    [
        ("full", True),
        ("full:3f9a0c1b2d4e", True),
        ("full:", True),
        ("step", False),
        ("step:3f9a0c1b2d4e", False),
        ("3f9a0c1b2d4e", False),
        ("fullest", False),
        ("Full", False),
        ("1718000000", False),
    ],
)
def test_which_values_are_full_promotions(value: str, full: bool) -> None:
    assert is_full_promotion(value) is full


@pytest.mark.parametrize(
    ("value", "stable_after", "traffic_after", "phase_after"),
    [
        # at step 1 (20 %, a 30 s pause): a full promotion ends the rollout ...
        ("full", "v2", {"stable": 100}, "Healthy"),
        ("full:a1b2c3", "v2", {"stable": 100}, "Healthy"),
        # ... a step ends the pause: 50 %, then the indefinite pause holds
        ("step", "v1", {"stable": 50, "canary": 50}, "Paused"),
        ("step:a1b2c3", "v1", {"stable": 50, "canary": 50}, "Paused"),
        ("a1b2c3", "v1", {"stable": 50, "canary": 50}, "Paused"),
    ],
)
def test_a_promote_value_during_a_canary_pause(
    value: str, stable_after: str, traffic_after: dict[str, int], phase_after: str
) -> None:
    md = rolling(strategy=CANARY)
    assert md.status is not None and md.status.traffic == {"stable": 80, "canary": 20}
    md, _ = run(with_annotations(md, promote=value), observe([V1, V2], ["v1", "v2"]), 205)
    assert md.status is not None
    assert stable(md) == stable_after
    assert md.status.traffic == traffic_after and md.status.phase == phase_after
    assert md.status.handled_actions["pilotage.dev/promote"] == value


@pytest.mark.parametrize(
    ("first", "second", "v3_promoted"),
    [
        ("full:aaaa", "full:bbbb", True),  # what `pilotage promote --full` writes twice
        ("full", "full:bbbb", True),
        ("full:aaaa", "full", True),
        ("full", "full", False),  # the same value is one request: v3 stays at its first step
    ],
)
def test_two_full_promotions_in_a_row(first: str, second: str, v3_promoted: bool) -> None:
    md = rolling(strategy=CANARY)
    md, _ = run(with_annotations(md, promote=first), observe([V1, V2], ["v1", "v2"]), 205)
    assert stable(md) == "v2"
    # v3 appears and reaches its first canary step
    md, _ = run(md, observe([V1, V2, V3], ["v2"]), 1100)
    md, _ = run(md, observe([V1, V2, V3], ["v2", "v3"]), 1101)
    assert md.status is not None and md.status.traffic == {"stable": 80, "canary": 20}
    md, result = run(
        with_annotations(md, promote=second), observe([V1, V2, V3], ["v2", "v3"]), 1102
    )
    assert md.status is not None
    if v3_promoted:
        assert stable(md) == "v3" and md.status.traffic == {"stable": 100}
        assert "Promoted" in [e.reason for e in result.events]
    else:
        assert stable(md) == "v2" and md.status.traffic == {"stable": 80, "canary": 20}
        assert result.events == []
