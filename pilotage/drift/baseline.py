"""Building baseline profiles from training columns, and counting rows into their bins.

Tests and benchmarks build baselines with these and use ``count_window`` to produce
what a server's bin counters would have counted. The trainer writes the model card's
profiles with its own ``pilotage.trainer.profiling``, which differs on purpose: it
rounds values and edges to float32 (as the server sees them), drops an edge at the
minimum, rounds proportions to 10 digits, ranks categories by frequency and profiles
an all-null column instead of refusing it.
Values: numeric columns as floats with NaN for null; categorical columns as
strings with None for null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from pilotage.api.modelcard import (
    NULL_BIN,
    OTHER_BIN,
    Baseline,
    CategoricalProfile,
    NumericProfile,
)
from pilotage.drift.errors import DriftInputError
from pilotage.drift.samples import Sample, bin_counts, quantile_edges

DEFAULT_BINS = 10


def numeric_profile(values: Sample, bins: int = DEFAULT_BINS) -> NumericProfile:
    """Quantile edges of the non-null values, the proportion in each bin, null rate, mean, std."""
    array = np.asarray(values, dtype=np.float64)
    nulls = int(np.count_nonzero(np.isnan(array)))
    present = array[~np.isnan(array)]
    if present.size == 0:
        raise DriftInputError("cannot profile a numeric column with no non-null value")
    edges = quantile_edges(present, bins)
    counts = bin_counts(edges, present)
    return NumericProfile(
        edges=[float(e) for e in edges],
        proportions=[float(c) for c in counts / present.size],
        null_rate=nulls / array.size,
        mean=float(present.mean()),
        std=float(present.std()),
    )


def categorical_profile(
    values: Sequence[str | None], categories: Sequence[str] | None = None
) -> CategoricalProfile:
    """Category proportions (sorted categories unless given), ``__other__`` last (0 in training
    when the categories are the training ones), null rate."""
    present = [v for v in values if v is not None]
    if not present:
        raise DriftInputError("cannot profile a categorical column with no non-null value")
    counts = Counter(present)
    names = sorted(counts) if categories is None else list(categories)
    known = set(names)
    other = sum(c for v, c in counts.items() if v not in known)
    proportions = [counts.get(name, 0) / len(present) for name in names] + [other / len(present)]
    return CategoricalProfile(
        categories=names, proportions=proportions, null_rate=1 - len(present) / len(values)
    )


def count_numeric(profile: NumericProfile, values: Sample) -> dict[str, int]:
    """Bin label → count for a numeric column, as a server's counters would count it."""
    array = np.asarray(values, dtype=np.float64)
    nulls = int(np.count_nonzero(np.isnan(array)))
    present = array[~np.isnan(array)]
    counts = np.bincount(
        np.searchsorted(np.asarray(profile.edges), present, side="right"),
        minlength=len(profile.edges) + 1,
    )
    out = {str(i): int(c) for i, c in enumerate(counts)}
    out[NULL_BIN] = nulls
    return out


def count_categorical(profile: CategoricalProfile, values: Sequence[str | None]) -> dict[str, int]:
    """Bin label → count for a categorical column; unseen categories go to ``__other__``."""
    out = dict.fromkeys([*profile.categories, OTHER_BIN, NULL_BIN], 0)
    known = set(profile.categories)
    for value in values:
        label = NULL_BIN if value is None else value if value in known else OTHER_BIN
        out[label] += 1
    return out


def count_window(
    baseline: Baseline, columns: Mapping[str, Sample | Sequence[str | None]]
) -> dict[str, dict[str, int]]:
    """Count every baseline feature's column into its bins (feature → bin label → count)."""
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
