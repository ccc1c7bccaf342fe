"""Variant choice: exact weighted split, sticky keys that move as little as possible."""

from __future__ import annotations

import math
from collections import Counter

from pilotage.router.split import (
    PercentSampler,
    StickyChooser,
    WeightedSplitter,
    _unit_interval,
)
from pilotage.wire.routes import Variant


def variants(**weights: int) -> list[Variant]:
    return [Variant(n, f"http://{n}:1", n, 1, w, "1") for n, w in weights.items()]


def test_weighted_split_is_exact_in_every_window_of_100() -> None:
    splitter = WeightedSplitter(variants(stable=90, canary=10))
    picks = [splitter.pick().name for _ in range(10_000)]
    assert Counter(picks) == {"stable": 9000, "canary": 1000}
    for start in range(0, 10_000, 100):
        assert picks[start : start + 100].count("canary") == 10
    # spread out, not in a burst: never two canary picks in a row at 10 %
    assert "canary,canary" not in ",".join(picks)


def test_weighted_split_three_ways_and_zero_weight() -> None:
    splitter = WeightedSplitter(variants(a=33, b=67, c=0))
    assert Counter(splitter.pick().name for _ in range(300)) == {"a": 99, "b": 201}


def test_sticky_is_stable_and_weight_change_moves_the_fewest_keys() -> None:
    keys = [f"user-{i}".encode() for i in range(20_000)]
    before = StickyChooser(variants(stable=90, canary=10))
    first = {k: before.pick(k).name for k in keys}
    assert first == {k: before.pick(k).name for k in keys}  # same key, same variant
    share = sum(v == "canary" for v in first.values()) / len(keys)
    assert 0.09 < share < 0.11

    after = StickyChooser(variants(stable=70, canary=30))
    second = {k: after.pick(k).name for k in keys}
    moved = [k for k in keys if first[k] != second[k]]
    # only stable -> canary moves, and about the 20 % of keys the weight change needs
    assert all(first[k] == "stable" and second[k] == "canary" for k in moved)
    assert 0.18 < len(moved) / len(keys) < 0.22


def test_percent_sampler_is_exact() -> None:
    for percent, expected in ((0, 0), (12.5, 125), (50, 500), (100, 1000)):
        sampler = PercentSampler(percent)
        assert sum(sampler.take() for _ in range(1000)) == expected


def test_unit_interval_stays_open_at_both_ends() -> None:
    # 2**64 - 1 as a float is 2**64: the old mapping returned exactly 1.0 there, and the
    # sticky score weight / -log(1.0) divided by zero for that key
    assert 0.0 < _unit_interval(0) < 1e-15
    assert _unit_interval(2**64 - 1) < 1.0
    assert math.log(_unit_interval(2**64 - 1)) < 0.0
