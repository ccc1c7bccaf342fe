"""Exact sample statistics against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from pilotage.drift import (
    DriftInputError,
    bin_counts,
    js_samples,
    ks_2samp,
    psi_samples,
    quantile_edges,
    wasserstein_1d,
)

samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=200
)


@pytest.mark.parametrize(
    ("n", "m", "shift"),
    [(2_000, 2_000, 0.0), (20_000, 5_000, 0.03), (100_000, 30_000, 0.02), (5_000, 800, 0.3)],
)
def test_ks_2samp_matches_scipy_asymptotic(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    a = rng.normal(size=n)
    b = rng.normal(shift, 1.0, size=m)
    ours = ks_2samp(a, b)
    theirs = stats.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-12)
    # Stephens' corrected Kolmogorov tail vs scipy's kstwo: within 0.005, closer near 0.05.
    assert ours.p_value == pytest.approx(theirs.pvalue, abs=5e-3)


def test_ks_2samp_with_ties_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 20, size=5_000).astype(float)
    b = rng.integers(1, 21, size=3_000).astype(float)
    assert ks_2samp(a, b).statistic == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_ks_and_wasserstein_match_scipy_on_arbitrary_samples(
    a: list[float], b: list[float]
) -> None:
    assert ks_2samp(a, b).statistic == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-9)
    assert wasserstein_1d(a, b) == pytest.approx(
        stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-6
    )
    assert 0.0 <= ks_2samp(a, b).p_value <= 1.0


def test_wasserstein_1d_matches_scipy_on_skewed_samples() -> None:
    rng = np.random.default_rng(2)
    a = rng.lognormal(size=50_000)
    b = rng.lognormal(0.1, 1.1, size=7_000)
    assert wasserstein_1d(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-10)


def test_nans_are_dropped_and_empty_samples_refused() -> None:
    a = np.array([1.0, np.nan, 2.0, 3.0])
    assert wasserstein_1d(a, [1.0, 2.0, 3.0]) == 0.0
    with pytest.raises(DriftInputError, match="current sample has no non-null value"):
        ks_2samp([1.0], [np.nan])
    with pytest.raises(DriftInputError, match="infinite"):
        wasserstein_1d([1.0, np.inf], [1.0])


def test_psi_and_js_on_samples_use_reference_quantile_bins() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=10_000)
    current = rng.normal(0.5, 1.0, size=4_000)
    edges = np.quantile(reference, np.arange(1, 10) / 10)
    p = np.histogram(reference, np.concatenate([[-np.inf], edges, [np.inf]]))[0] / reference.size
    q = np.histogram(current, np.concatenate([[-np.inf], edges, [np.inf]]))[0] / current.size
    assert psi_samples(reference, current) == pytest.approx(
        stats.entropy(q, p) + stats.entropy(p, q), rel=1e-9
    )
    assert js_samples(reference, current) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)
    assert psi_samples(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_quantile_edges_merge_ties_and_bin_counts_follow_the_card_convention() -> None:
    assert list(quantile_edges([1, 1, 1, 1, 2], bins=4)) == [1.0]
    # searchsorted(side="right"): a value equal to an edge goes to the bin above it.
    assert list(bin_counts([1.0, 2.0], [0.5, 1.0, 1.5, 2.0, 9.0])) == [1, 2, 2]
    with pytest.raises(DriftInputError, match="bins must be >= 2"):
        quantile_edges([1.0, 2.0], bins=1)
