"""Samples for the exact tests from the card's training sample and from recent rows."""

from __future__ import annotations

import math

import numpy as np

from pilotage.api.modelcard import Baseline, BaselineSample, CategoricalProfile, NumericProfile
from pilotage.drift import Reservoir, evaluate
from pilotage.drift.reference import current_samples, reference_samples

NUMERIC = NumericProfile(edges=[0.0], proportions=[0.5, 0.5])


def _baseline(sample: BaselineSample | None) -> Baseline:
    return Baseline(
        rows=4,
        features={
            "x": NUMERIC,
            "empty": NUMERIC,
            "c": CategoricalProfile(categories=["a"], proportions=[1.0, 0.0]),
        },
        predictions=CategoricalProfile(categories=["0"], proportions=[1.0, 0.0]),
        sample=sample,
    )


def test_reference_keeps_numeric_features_with_values() -> None:
    sample = BaselineSample(
        columns=["c", "x", "empty"],
        rows=[["a", 1.5, None], [None, None, None], ["a", -2.0, None]],
    )
    reference = reference_samples(_baseline(sample))
    assert list(reference) == ["x"]  # c is categorical, empty has no value
    assert np.array_equal(reference["x"], [1.5, math.nan, -2.0], equal_nan=True)
    assert reference_samples(_baseline(None)) == {}


def test_current_leaves_out_what_cannot_be_compared_exactly() -> None:
    columns = ["x", "y", "z", "w"]
    rows = [[1.0, "a", 1.0, 2.0], [None, 2.0, math.inf, 3.0], [3.0, 4.0, 5.0]]
    current = current_samples(["x", "y", "z", "w", "missing"], columns, rows)
    assert sorted(current) == ["w", "x"]  # y has a string, z an infinity
    assert np.array_equal(current["x"], [1.0, math.nan, 3.0], equal_nan=True)
    assert np.array_equal(current["w"], [2.0, 3.0, math.nan], equal_nan=True)  # short row


def test_samples_from_both_sides_drive_an_exact_ks() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0.0, 1.0, 300)
    live = rng.normal(0.5, 1.0, 200)
    card = _baseline(BaselineSample(columns=["x"], rows=[[float(v)] for v in train]))
    reservoir = Reservoir(
        reference=reference_samples(card),
        current=current_samples(["x"], ["x"], [[float(v)] for v in live]),
    )
    window = {"x": {"0": 100, "1": 100, "null": 0}}
    report = evaluate(card, window, method="ks", min_samples=100, reservoir=reservoir)
    [x] = [f for f in report.features if f.name == "x"]
    assert x.exact and x.drifted and x.samples == 200
