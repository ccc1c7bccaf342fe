"""Baseline profiles (from the model card) laid out as bins, and window counts put into them.

Bin labels follow pilotage.api.modelcard: numeric bins are "0".."k-1", categorical
bins are the categories then "__other__", and nulls have their own "null" label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pilotage.api.modelcard import NULL_BIN, OTHER_BIN, CategoricalProfile, NumericProfile
from pilotage.drift.binned import FloatArray, binned_mean_std
from pilotage.drift.errors import DriftInputError
from pilotage.drift.window import is_count


@dataclass(frozen=True)
class BinLayout:
    """A profile's non-null bins: their labels and baseline proportions (summing to 1)."""

    name: str
    labels: tuple[str, ...]
    proportions: FloatArray
    null_rate: float
    edges: FloatArray | None
    std: float | None

    @property
    def numeric(self) -> bool:
        return self.edges is not None


@dataclass(frozen=True)
class WindowCounts:
    """One feature's window counts, in the layout's bin order, and its null count."""

    values: npt.NDArray[np.int64]
    nulls: int

    @property
    def total(self) -> int:
        return int(self.values.sum()) + self.nulls


def layout(name: str, profile: NumericProfile | CategoricalProfile) -> BinLayout:
    """Check a profile and lay it out; proportions are renormalised over the non-null bins."""
    proportions = np.asarray(profile.proportions, dtype=np.float64)
    if not 0.0 <= profile.null_rate <= 1.0:
        raise DriftInputError(f"baseline of {name}: nullRate must be in [0, 1]")
    if proportions.size == 0 or not np.all(np.isfinite(proportions)) or np.any(proportions < 0):
        raise DriftInputError(f"baseline of {name}: proportions must be non-negative numbers")
    total = proportions.sum()
    if total <= 0:
        raise DriftInputError(f"baseline of {name}: proportions are all zero")
    if isinstance(profile, NumericProfile):
        edges = np.asarray(profile.edges, dtype=np.float64)
        if np.any(np.diff(edges) <= 0) or not np.all(np.isfinite(edges)):
            raise DriftInputError(f"baseline of {name}: edges must be finite and increasing")
        if proportions.size != edges.size + 1:
            raise DriftInputError(
                f"baseline of {name}: {edges.size} edges need {edges.size + 1} proportions, "
                f"got {proportions.size}"
            )
        labels = tuple(str(i) for i in range(proportions.size))
        std = profile.std
        if std is None and edges.size:
            _, std = binned_mean_std(list(edges), proportions)
        return BinLayout(name, labels, proportions / total, profile.null_rate, edges, std)
    if proportions.size != len(profile.categories) + 1:
        raise DriftInputError(
            f"baseline of {name}: {len(profile.categories)} categories need "
            f"{len(profile.categories) + 1} proportions (the last for {OTHER_BIN}), "
            f"got {proportions.size}"
        )
    labels = (*profile.categories, OTHER_BIN)
    return BinLayout(name, labels, proportions / total, profile.null_rate, None, None)


def window_counts_for(bins: BinLayout, counts: Mapping[str, int]) -> WindowCounts:
    """Put one feature's window counts (label → count) into its bins; unknown labels are refused."""
    index = {label: i for i, label in enumerate(bins.labels)}
    values = np.zeros(len(bins.labels), dtype=np.int64)
    nulls = 0
    for label, count in counts.items():
        if not is_count(count):
            raise DriftInputError(f"count of {bins.name}/{label} is not a count: {count!r}")
        if label == NULL_BIN:
            nulls += int(count)
        elif label in index:
            values[index[label]] += int(count)
        else:
            raise DriftInputError(
                f"{bins.name} has no bin {label!r} in the baseline "
                f"(expected one of {', '.join(bins.labels)} or {NULL_BIN})"
            )
    return WindowCounts(values, nulls)


def with_nulls(bins: BinLayout, window: WindowCounts) -> tuple[FloatArray, FloatArray]:
    """Expected proportions and observed counts over all bins, the null bin last.

    The null bin is left out when neither the baseline nor the window has a null,
    so a nullable-but-never-null feature's PSI is not moved by epsilon terms.
    """
    if bins.null_rate == 0.0 and window.nulls == 0:
        return bins.proportions, window.values.astype(np.float64)
    expected = np.append(bins.proportions * (1.0 - bins.null_rate), bins.null_rate)
    observed = np.append(window.values.astype(np.float64), float(window.nulls))
    return expected, observed
