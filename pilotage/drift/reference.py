"""Samples for the exact tests, from the model card's training sample and recent rows.

``reference_samples`` reads the card's ``baseline.sample``; ``current_samples`` turns
rows like a server's reservoir into per-feature arrays. Both keep numeric features
only and read null as NaN; a feature whose values cannot be compared exactly (a
string, an infinity, no value at all) is left out, so it is judged on the bins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from pilotage.api.modelcard import Baseline, NumericProfile
from pilotage.drift.binned import FloatArray


def _column(values: Iterable[object]) -> FloatArray | None:
    out: list[float] = []
    for v in values:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
        else:
            return None
    return np.array(out, dtype=np.float64)


def numeric_features(baseline: Baseline) -> list[str]:
    return [n for n, p in baseline.features.items() if isinstance(p, NumericProfile)]


def current_samples(
    features: Iterable[str], columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> dict[str, FloatArray]:
    """Per wanted feature, its column of ``rows`` (``columns`` names them)."""
    index = {name: j for j, name in enumerate(columns)}
    wanted = [(name, index[name]) for name in features if name in index]
    table = list(rows)
    out: dict[str, FloatArray] = {}
    for name, j in wanted:
        column = _column(row[j] if j < len(row) else None for row in table)
        if column is not None:
            out[name] = column
    return out


def reference_samples(baseline: Baseline) -> dict[str, FloatArray]:
    """The card's training sample per numeric feature (empty when the card has none);
    features without a single value in the sample are left out."""
    sample = baseline.sample
    if sample is None:
        return {}
    columns = current_samples(numeric_features(baseline), sample.columns, sample.rows)
    return {n: c for n, c in columns.items() if np.any(~np.isnan(c))}
