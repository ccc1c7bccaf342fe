"""Stats windows and histogram quantiles the control plane computes from router stats."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pilotage.router.analysis import latency_quantile, window
from pilotage.router.stats import LATENCY_BOUNDS, StatsRegistry


def test_quantile_interpolates_within_the_bucket() -> None:
    le = [0.001, 0.01, 0.1]
    assert latency_quantile(le, [0, 0, 0, 0], 0.99) is None
    assert latency_quantile(le, [50, 50, 0, 0], 0.5) == pytest.approx(0.001)
    assert latency_quantile(le, [0, 100, 0, 0], 0.5) == pytest.approx(0.0055)
    assert latency_quantile(le, [98, 0, 0, 2], 0.99) == math.inf


def stats_doc(registry: StatsRegistry, uptime: float) -> dict[str, Any]:
    return {
        "uptimeSeconds": uptime,
        "variants": {s.name: s.to_json() for s in registry.current()},
        "shadowTotals": registry.shadow.to_json(),
    }


def test_window_takes_differences_and_restarts_from_zero_on_new_versions() -> None:
    registry = StatsRegistry()
    stable, canary = registry.for_variant("stable", "1"), registry.for_variant("canary", "2")
    registry.set_current({("stable", "1"), ("canary", "2")})
    for _ in range(100):
        stable.record(200, 0.002)
    before = stats_doc(registry, 10)
    for i in range(100):
        canary.record(500 if i < 5 else 200, 0.004 if i < 98 else 2.0)
        stable.record(200, 0.002)
    canary.feedback.labelled, canary.feedback.correct = 10, 9
    registry.shadow.agree, registry.shadow.disagree = 30, 10
    variants, shadow = window(before, stats_doc(registry, 20))
    assert variants["stable"].requests == 100 and variants["stable"].error_rate == 0
    assert variants["canary"].requests == 100 and variants["canary"].error_rate == 0.05
    assert LATENCY_BOUNDS[6] == 0.004 and variants["canary"].p50_seconds <= 0.004  # type: ignore[operator]
    assert 1.5 <= variants["canary"].p99_seconds <= 2.0  # type: ignore[operator]
    assert variants["canary"].accuracy == 0.9
    assert (shadow.agree, shadow.disagree, shadow.agreement) == (30, 10, 0.75)

    # a router restart (uptime went down) measures from zero
    variants, _ = window(before, stats_doc(registry, 5))
    assert variants["stable"].requests == 200


def test_recent_answers_are_bounded_by_count_and_bytes() -> None:
    from pilotage.router.feedback import RecentAnswers

    stats = StatsRegistry().for_variant("stable", "1")
    recent = RecentAnswers(capacity=3, max_bytes=100)
    for i in range(5):
        recent.remember(b"id-%d" % i, stats, b"x" * 10)
    assert len(recent) == 3 and recent.take(b"id-1") is None and recent.take(b"id-4") is not None
    recent.remember(b"big", stats, b"y" * 95)  # pushes the older ones out by bytes
    assert len(recent) == 1 and recent.kept_bytes == 95
    assert recent.take(b"big") == (stats, b"y" * 95) and recent.kept_bytes == 0
