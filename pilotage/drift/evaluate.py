"""One drift check: baseline profile + window counts (+ optional reservoir) → DriftReport.

Pure: no I/O, no clock. The DriftMonitor reconciler takes two snapshots of a
server's cumulative bin counters, turns them into a window with
``window_counts`` and calls ``evaluate``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pilotage.api.modelcard import Baseline, CategoricalProfile, NumericProfile
from pilotage.drift.binned import FloatArray, chi2, js_distance, ks_binned, psi, wasserstein_binned
from pilotage.drift.errors import DriftInputError
from pilotage.drift.profiles import BinLayout, WindowCounts, layout, window_counts_for, with_nulls
from pilotage.drift.report import DriftReport, FeatureDrift
from pilotage.drift.samples import Sample, clean_sample, ks_2samp, wasserstein_1d

METHODS = ("psi", "ks", "js", "wasserstein", "chi2", "auto")
P_VALUE_METHODS = frozenset({"ks", "chi2"})
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "psi": 0.2,
    "js": 0.1,
    "wasserstein": 0.1,
    "ks": 0.05,
    "chi2": 0.05,
}
# Methods that only make sense on the real line, and what a categorical feature gets instead.
CATEGORICAL_SUBSTITUTE: Mapping[str, str] = {"ks": "chi2", "wasserstein": "js"}
# Smallest standard deviation Wasserstein-1 is divided by (Evidently uses the same floor).
WASSERSTEIN_MIN_NORM = 0.001
PREDICTION_NAME = "__prediction__"


@dataclass(frozen=True)
class Reservoir:
    """Samples for the exact tests: a reference sample of the training data and the
    server's reservoir of recent rows, per numeric feature (NaN for null)."""

    reference: Mapping[str, Sample] = field(default_factory=dict)
    current: Mapping[str, Sample] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls,
        reference: Mapping[str, Sample],
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> Reservoir:
        """From a server's reservoir snapshot (column names + rows, None for null); only
        the columns with a reference sample are kept, as floats."""
        current: dict[str, FloatArray] = {}
        for j, name in enumerate(columns):
            if name not in reference:
                continue
            try:
                current[name] = np.array(
                    [np.nan if row[j] is None else float(row[j]) for row in rows],
                    dtype=np.float64,
                )
            except (TypeError, ValueError, IndexError) as exc:
                raise DriftInputError(f"reservoir column {name} is not numeric: {exc}") from exc
        return cls(reference=reference, current=current)


def resolve_method(method: str, numeric: bool, has_samples: bool) -> str:
    """The method a feature gets: auto picks PSI on bins (KS with samples) for numeric
    features and chi² for categorical ones; ks/wasserstein fall back to chi2/js there."""
    if method == "auto":
        if numeric:
            return "ks" if has_samples else "psi"
        return "chi2"
    if not numeric:
        return CATEGORICAL_SUBSTITUTE.get(method, method)
    return method


def resolve_threshold(
    requested: str, used: str, name: str, threshold: float | None, per_feature: Mapping[str, float]
) -> float:
    """Per-feature threshold first; then ``threshold`` if the feature uses the requested
    method (for auto: PSI); then the method's default."""
    if name in per_feature:
        return per_feature[name]
    applies_to = "psi" if requested == "auto" else requested
    if threshold is not None and used == applies_to:
        return threshold
    return DEFAULT_THRESHOLDS[used]


def _samples_for(
    reservoir: Reservoir | None, name: str, min_samples: int
) -> tuple[FloatArray, FloatArray] | None:
    if reservoir is None or name not in reservoir.reference or name not in reservoir.current:
        return None
    reference = np.asarray(reservoir.reference[name], dtype=np.float64)
    current = np.asarray(reservoir.current[name], dtype=np.float64)
    if np.count_nonzero(~np.isnan(current)) < max(min_samples, 1):
        return None
    return clean_sample(reference, f"reference sample of {name}"), clean_sample(
        current, f"reservoir of {name}"
    )


def _binned_statistic(
    method: str, bins: BinLayout, window: WindowCounts, reference_rows: int
) -> tuple[float, float | None, int]:
    """(score, p-value, samples) of one method on the baseline bins."""
    if method in ("psi", "js", "chi2"):
        expected, observed = with_nulls(bins, window)
        if window.total == 0:
            return 0.0, (1.0 if method == "chi2" else None), 0
        if method == "psi":
            return psi(expected, observed), None, window.total
        if method == "js":
            return js_distance(expected, observed), None, window.total
        result = chi2(expected, observed, reference_size=reference_rows or None)
        return result.statistic, result.p_value, window.total
    non_null = int(window.values.sum())
    if non_null == 0:
        return 0.0, (1.0 if method == "ks" else None), 0
    if method == "ks":
        ks = ks_binned(bins.proportions, window.values, reference_size=reference_rows or None)
        return ks.statistic, ks.p_value, non_null
    assert bins.edges is not None
    if bins.edges.size == 0:  # a single bin (the column was all null in training): no scale
        return 0.0, None, non_null
    scale = max(bins.std or 0.0, WASSERSTEIN_MIN_NORM)
    lower = upper = None
    if bins.edges.size == 1:
        # Two bins (a two-valued feature, say) give outer_bounds no width to borrow, so
        # both would collapse onto the edge and every window would score 0. Each bin is
        # taken to span one baseline std instead: the score is then the share that moved
        # across the edge.
        lower, upper = float(bins.edges[0]) - scale, float(bins.edges[0]) + scale
    distance = wasserstein_binned(
        list(bins.edges), bins.proportions, window.values, lower=lower, upper=upper
    )
    return distance / scale, None, non_null


def _exact_statistic(
    method: str, reference: FloatArray, current: FloatArray
) -> tuple[float, float | None, int]:
    if method == "ks":
        ks = ks_2samp(reference, current)
        return ks.statistic, ks.p_value, int(current.size)
    distance = wasserstein_1d(reference, current)
    return distance / max(float(np.std(reference)), WASSERSTEIN_MIN_NORM), None, int(current.size)


def _verdict(method: str, score: float, p_value: float | None, threshold: float) -> bool:
    if method in P_VALUE_METHODS:
        return p_value is not None and p_value < threshold
    return score >= threshold


def _check_arguments(
    baseline: Baseline,
    method: str,
    threshold: float | None,
    feature_thresholds: Mapping[str, float],
    drift_share: float,
    min_samples: int,
) -> None:
    if method not in METHODS:
        raise DriftInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise DriftInputError(f"threshold must be a positive number, got {threshold}")
    for name, value in feature_thresholds.items():
        if name not in baseline.features and name != PREDICTION_NAME:
            raise DriftInputError(f"feature_thresholds names unknown feature {name!r}")
        if not (math.isfinite(value) and value > 0):
            raise DriftInputError(f"threshold of {name} must be a positive number, got {value}")
    if not 0 < drift_share <= 1:
        raise DriftInputError(f"drift_share must be in (0, 1], got {drift_share}")
    if min_samples < 0:
        raise DriftInputError(f"min_samples must be >= 0, got {min_samples}")


@dataclass(frozen=True)
class _Settings:
    method: str
    threshold: float | None
    feature_thresholds: Mapping[str, float]
    min_samples: int
    reference_rows: int


def _judge(
    name: str,
    profile: NumericProfile | CategoricalProfile,
    counts: Mapping[str, int],
    samples: tuple[FloatArray, FloatArray] | None,
    settings: _Settings,
) -> FeatureDrift:
    bins = layout(name, profile)
    window = window_counts_for(bins, counts)
    used = resolve_method(settings.method, bins.numeric, samples is not None)
    limit = resolve_threshold(
        settings.method, used, name, settings.threshold, settings.feature_thresholds
    )
    if samples is not None and used in ("ks", "wasserstein"):
        score, p_value, seen = _exact_statistic(used, *samples)
        exact = True
    else:
        score, p_value, seen = _binned_statistic(used, bins, window, settings.reference_rows)
        exact = False
    drifted = seen >= max(settings.min_samples, 1) and _verdict(used, score, p_value, limit)
    return FeatureDrift(name, used, score, limit, drifted, seen, p_value, exact)


def evaluate(
    baseline: Baseline,
    window: Mapping[str, Mapping[str, int]],
    predictions: Mapping[str, int] | None = None,
    *,
    method: str = "psi",
    threshold: float | None = None,
    feature_thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    min_samples: int = 100,
    reservoir: Reservoir | None = None,
) -> DriftReport:
    """Judge every baseline feature (and the predictions) over one window.

    ``window`` maps feature → bin label → count (see ``window_counts``);
    ``predictions`` maps class (or prediction bin) → count. ``threshold`` None means
    the method's default (psi 0.2, js 0.1, wasserstein 0.1, ks 0.05, chi2 0.05).
    Raises DriftInputError (a ValueError) naming what is wrong with the input.
    """
    per_feature = dict(feature_thresholds or {})
    _check_arguments(baseline, method, threshold, per_feature, drift_share, min_samples)
    unknown = sorted(set(window) - set(baseline.features))
    if unknown:
        raise DriftInputError(
            f"window has counts for features not in the baseline: {', '.join(unknown)}"
        )
    settings = _Settings(method, threshold, per_feature, min_samples, baseline.rows)
    results = [
        _judge(
            name,
            profile,
            window.get(name, {}),
            _samples_for(reservoir, name, min_samples)
            if isinstance(profile, NumericProfile)
            else None,
            settings,
        )
        for name, profile in baseline.features.items()
    ]
    rows = max(_rows_per_feature(baseline, window), default=0)
    insufficient = rows < min_samples
    prediction = None
    if predictions:
        prediction = _judge(PREDICTION_NAME, baseline.predictions, predictions, None, settings)
    if insufficient:
        results = [_not_drifted(r) for r in results]
        prediction = None if prediction is None else _not_drifted(prediction)
    drifted = sorted((r for r in results if r.drifted), key=lambda r: (-r.score, r.name))
    share = len(drifted) / len(results) if results else 0.0
    return DriftReport(
        samples=rows,
        method=method,
        features=tuple(results),
        drifted_features=tuple(r.name for r in drifted),
        share_drifted=share,
        drift_share=drift_share,
        dataset_drift=bool(results) and not insufficient and share >= drift_share,
        prediction=prediction,
        insufficient_data=insufficient,
    )


def _rows_per_feature(baseline: Baseline, window: Mapping[str, Mapping[str, int]]) -> list[int]:
    """Every row is counted once per feature (into a bin or as null): a feature's total is the rows."""
    return [int(sum(window.get(name, {}).values())) for name in baseline.features]


def _not_drifted(result: FeatureDrift) -> FeatureDrift:
    return FeatureDrift(
        result.name,
        result.method,
        result.score,
        result.threshold,
        False,
        result.samples,
        result.p_value,
        result.exact,
    )
