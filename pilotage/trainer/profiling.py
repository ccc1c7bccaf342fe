"""Baseline profiles: quantile bins for numeric columns, proportions for categories.

Bins follow the convention in :mod:`pilotage.api.modelcard`: inner edges, a value goes to
``searchsorted(edges, x, side="right")``; proportions are shares of the non-null values,
and ``nullRate`` is the share of nulls among all rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from pilotage.api.modelcard import CategoricalProfile, NumericProfile

NUMERIC_BINS = 10
DEFAULT_MAX_CATEGORIES = 50


def _round(x: float) -> float:
    return float(f"{x:.10g}")


def numeric_profile(values: np.ndarray, bins: int = NUMERIC_BINS) -> NumericProfile:
    """Quantile bins of the non-NaN values (edges deduplicated, so ties give fewer bins).

    Values and edges are rounded to float32 first: the server sees float32 inputs, and a
    quantile that lands on a data value (``1.4``) must put that value in the same bin in
    training and in serving, where it arrives as ``1.39999998``.
    """
    values = np.asarray(values, dtype=np.float32).astype(np.float64).ravel()
    rows = values.size
    present = values[~np.isnan(values)]
    null_rate = 0.0 if rows == 0 else float((rows - present.size) / rows)
    if present.size == 0:
        return NumericProfile(edges=[], proportions=[1.0], null_rate=null_rate)
    quantiles = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(quantiles.astype(np.float32).astype(np.float64))
    # An edge at the minimum would leave bin 0 empty by construction.
    edges = edges[edges > present.min()]
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    return NumericProfile(
        edges=[float(e) for e in edges],
        proportions=[_round(c / present.size) for c in counts],
        null_rate=_round(null_rate),
        mean=_round(float(present.mean())),
        std=_round(float(present.std())),
    )


def top_categories(values: Iterable[object], limit: int = DEFAULT_MAX_CATEGORIES) -> list[str]:
    """The most frequent categories, most frequent first, ties by name (deterministic)."""
    return top_of(Counter(str(v) for v in values if v is not None), limit)


def top_of(counts: Mapping[str, int], limit: int = DEFAULT_MAX_CATEGORIES) -> list[str]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, _ in ranked[:limit]]


def categorical_profile(
    values: Sequence[object], categories: list[str] | None = None
) -> CategoricalProfile:
    """Proportions of each category among non-null values, then ``__other__``."""
    present = [str(v) for v in values if v is not None]
    cats = categories if categories is not None else top_categories(present)
    return profile_of_counts(Counter(present), len(values), len(present), cats)


def profile_of_counts(
    counts: Mapping[str, int], rows: int, present: int, categories: list[str]
) -> CategoricalProfile:
    """categorical_profile from counts: ``present`` values (not null) among ``rows``."""
    known = [counts.get(c, 0) for c in categories]
    other = present - sum(known)
    total = max(present, 1)
    return CategoricalProfile(
        categories=categories,
        proportions=[_round(c / total) for c in [*known, other]],
        null_rate=_round(0.0 if rows == 0 else (rows - present) / rows),
    )
