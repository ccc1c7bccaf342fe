"""The baseline bins, in one place: profiles (bin edges, proportions) and counting into them.

The trainer writes the model card's profiles with ``numeric_profile`` and
``categorical_profile``; the model server counts served rows with ``NumericBins`` and
``CategoryBins``; tests and benchmarks count a column as a server would with
``count_window``. The convention is :mod:`pilotage.api.modelcard`'s: inner edges, a value
goes to ``bin_of(edges, x)`` = ``searchsorted(edges, x, side="right")`` (a value on an
edge goes to the bin above it); categorical bins are the categories, then ``__other__``;
nulls (NaN, None) are counted apart. Proportions are shares of the non-null values,
``nullRate`` the share of nulls among all rows.

Numeric values are read as float32, as the server reads them: a quantile that lands on a
data value (``1.4``) must put that value in the same bin in training and in serving,
where it arrives as ``1.39999998``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pilotage.api.modelcard import (
    NULL_BIN,
    OTHER_BIN,
    Baseline,
    CategoricalProfile,
    NumericProfile,
)
from pilotage.drift.errors import DriftInputError

NUMERIC_BINS = 10
DEFAULT_MAX_CATEGORIES = 50


def rounded(x: float) -> float:
    """A proportion or moment as the model card keeps it (10 significant digits)."""
    return float(f"{x:.10g}")


def quantile_edges_of(values: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.float64]:
    """The values' quantiles 1/bins ... (bins-1)/bins, deduplicated (ties merge bins)."""
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def bin_of(edges: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The bin of each value: ``searchsorted(edges, x, side="right")``."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")


def count_bins(edges: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """How many of the (non-NaN) values fall in each of the ``len(edges) + 1`` bins."""
    return np.bincount(bin_of(edges, values), minlength=np.asarray(edges).size + 1)


def as_served(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Numbers as the server reads them (float32), widened back to float64, flattened."""
    return np.asarray(values, dtype=np.float32).astype(np.float64).ravel()


def profile_edges(present: npt.NDArray[np.float64], bins: int = NUMERIC_BINS) -> list[float]:
    """Quantile edges of non-null values read as served: float32, deduplicated (ties give
    fewer bins), and no edge at the minimum (it would leave bin 0 empty by construction)."""
    if present.size == 0:
        return []
    quantiles = quantile_edges_of(present, bins)
    edges = np.unique(quantiles.astype(np.float32).astype(np.float64))
    return [float(e) for e in edges[edges > present.min()]]


def numeric_profile(values: npt.ArrayLike, bins: int = NUMERIC_BINS) -> NumericProfile:
    """Quantile bins of the non-NaN values, their proportions, null rate, mean and std.

    A column with no value at all gets one bin (``edges=[]``, ``proportions=[1.0]``).
    """
    array = as_served(values)
    rows = array.size
    present = array[~np.isnan(array)]
    null_rate = 0.0 if rows == 0 else float((rows - present.size) / rows)
    if present.size == 0:
        return NumericProfile(edges=[], proportions=[1.0], null_rate=null_rate)
    edges = profile_edges(present, bins)
    counts = count_bins(edges, present)
    return NumericProfile(
        edges=edges,
        proportions=[rounded(c / present.size) for c in counts],
        null_rate=rounded(null_rate),
        mean=rounded(float(present.mean())),
        std=rounded(float(present.std())),
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
    """Proportions of each category among non-null values, then ``__other__``; without
    ``categories``, the most frequent ones (``top_categories``)."""
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
        proportions=[rounded(c / total) for c in [*known, other]],
        null_rate=rounded(0.0 if rows == 0 else (rows - present) / rows),
    )


class NumericBins:
    """Cumulative counts of a numeric column in its baseline bins; NaN counts as null."""

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.counts = np.zeros(len(edges) + 1, dtype=np.int64)
        self.nulls = 0

    def add(self, values: npt.NDArray[np.floating]) -> None:
        nan = np.isnan(values)
        nulls = int(nan.sum())
        if nulls:
            self.nulls += nulls
            values = values[~nan]
        self.counts += count_bins(self.edges, values)

    def labels(self) -> dict[str, int]:
        """Bin label → count: ``"0"`` … ``"k"``, then ``null``."""
        out = {str(i): int(c) for i, c in enumerate(self.counts)}
        out[NULL_BIN] = self.nulls
        return out


class CategoryBins:
    """Cumulative counts of a categorical column: its categories, ``__other__``, ``null``."""

    def __init__(self, categories: Sequence[str]) -> None:
        self.index = {c: i for i, c in enumerate(categories)}
        self.categories = list(categories)
        self.counts = [0] * (len(categories) + 1)  # last: __other__
        self.nulls = 0

    def add(self, values: Iterable[Any]) -> None:
        other = len(self.categories)
        for v in values:
            if v is None:
                self.nulls += 1
            else:
                self.counts[self.index.get(v, other)] += 1

    def labels(self) -> dict[str, int]:
        """Bin label → count: the categories, ``__other__``, then ``null``."""
        out = {c: self.counts[i] for i, c in enumerate(self.categories)}
        out[OTHER_BIN] = self.counts[-1]
        out[NULL_BIN] = self.nulls
        return out


def count_numeric(profile: NumericProfile, values: npt.ArrayLike) -> dict[str, int]:
    """Bin label → count for a numeric column, as a server's counters count it (float32)."""
    bins = NumericBins(profile.edges)
    bins.add(as_served(values))
    return bins.labels()


def count_categorical(profile: CategoricalProfile, values: Iterable[str | None]) -> dict[str, int]:
    """Bin label → count for a categorical column; unseen categories go to ``__other__``."""
    bins = CategoryBins(profile.categories)
    bins.add(values)
    return bins.labels()


def count_window(
    baseline: Baseline, columns: Mapping[str, npt.ArrayLike | Sequence[str | None]]
) -> dict[str, dict[str, int]]:
    """Count every baseline feature's column into its bins (feature → bin label → count).

    Numeric columns as floats with NaN for null; categorical columns as strings with None
    for null."""
    window: dict[str, dict[str, int]] = {}
    for name, profile in baseline.features.items():
        if name not in columns:
            raise DriftInputError(f"no column for feature {name!r}")
        column = columns[name]
        if isinstance(profile, NumericProfile):
            window[name] = count_numeric(profile, column)  # type: ignore[arg-type]
        else:
            window[name] = count_categorical(profile, column)  # type: ignore[arg-type]
    return window
