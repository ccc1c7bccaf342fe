"""Binned statistics against scipy and the published formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from pilotage.drift import (
    PSI_EPSILON,
    DriftInputError,
    binned_mean_std,
    chi2,
    js_distance,
    ks_binned,
    psi,
    wasserstein_binned,
)
from pilotage.drift.binned import outer_bounds

counts_lists = st.lists(st.integers(min_value=0, max_value=10_000), min_size=2, max_size=30).filter(
    lambda xs: sum(xs) > 0
)


def _paired(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    size = draw(st.integers(min_value=2, max_value=30))
    cell = st.integers(min_value=0, max_value=10_000)
    a = draw(st.lists(cell, min_size=size, max_size=size).filter(lambda xs: sum(xs) > 0))
    b = draw(st.lists(cell, min_size=size, max_size=size).filter(lambda xs: sum(xs) > 0))
    return a, b


paired_counts = st.composite(_paired)()


def test_psi_is_symmetrised_kl_divergence_as_scipy_computes_it() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    observed = np.array([150, 220, 280, 350])
    q = observed / observed.sum()
    expected = stats.entropy(q, p) + stats.entropy(p, q)
    assert psi(p, observed) == pytest.approx(expected, rel=1e-12)
    assert psi(p, observed) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)


def test_psi_floors_empty_bins_at_the_stated_epsilon() -> None:
    p = np.array([0.5, 0.5, 0.0])
    observed = np.array([40, 50, 10])
    q = observed / 100
    floored_p = np.array([0.5, 0.5, PSI_EPSILON])
    expected = float(np.sum((q - floored_p) * np.log(q / floored_p)))
    assert psi(p, observed) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(psi([1.0, 0.0], [0, 7]))


@settings(max_examples=200, deadline=None)
@given(paired_counts)
def test_psi_is_non_negative_and_zero_for_identical_distributions(
    pair: tuple[list[int], list[int]],
) -> None:
    a, b = pair
    assert psi(a, b) >= -1e-12
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)


def test_js_distance_matches_scipy_base_2() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        p = rng.dirichlet(np.ones(12))
        observed = rng.integers(0, 500, size=12)
        observed[rng.integers(0, 12)] = 0
        q = observed / observed.sum()
        assert js_distance(p, observed) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(paired_counts)
def test_js_distance_is_symmetric_and_in_unit_interval(pair: tuple[list[int], list[int]]) -> None:
    a, b = pair
    value = js_distance(a, b)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(js_distance(b, a), abs=1e-12)
    assert js_distance(a, a) == pytest.approx(0.0, abs=1e-7)


def test_js_distance_of_disjoint_supports_is_one() -> None:
    assert js_distance([1, 0], [0, 5]) == pytest.approx(1.0)


def test_chi2_matches_scipy_chisquare() -> None:
    rng = np.random.default_rng(3)
    for k in (2, 5, 17):
        p = rng.dirichlet(np.ones(k) * 2)
        observed = rng.multinomial(2_000, rng.dirichlet(np.ones(k) * 2))
        result = chi2(p, observed)
        reference = stats.chisquare(observed, f_exp=p * observed.sum())
        assert result.statistic == pytest.approx(reference.statistic, rel=1e-10)
        assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8, abs=1e-300)
        assert result.dof == k - 1


def test_chi2_drops_bins_empty_on_both_sides_and_floors_unseen_ones() -> None:
    p = np.array([0.5, 0.5, 0.0, 0.0])
    observed = np.array([60, 38, 2, 0])
    result = chi2(p, observed)
    floored = np.array([0.5, 0.5, PSI_EPSILON])
    floored /= floored.sum()
    reference = stats.chisquare(observed[:3], f_exp=floored * 100)
    assert result.dof == 2
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8, abs=1e-300)


def test_chi2_with_the_baseline_size_is_scipy_contingency_homogeneity() -> None:
    reference = np.array([120, 300, 80, 0, 500])
    observed = np.array([30, 70, 40, 3, 90])
    result = chi2(reference / reference.sum(), observed, reference_size=int(reference.sum()))
    table = np.array([reference, observed])
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    assert result.dof == dof == 4
    assert result.statistic == pytest.approx(statistic, rel=1e-10)
    assert result.p_value == pytest.approx(p_value, rel=1e-8)


def test_chi2_with_one_informative_bin_has_nothing_to_test() -> None:
    assert chi2([1.0, 0.0], [10, 0]).p_value == 1.0


def test_ks_binned_statistic_equals_scipy_on_bin_indices() -> None:
    rng = np.random.default_rng(11)
    reference = rng.integers(0, 8, size=3_000)
    current = np.minimum(rng.integers(0, 8, size=1_500) + rng.integers(0, 2, size=1_500), 7)
    p = np.bincount(reference, minlength=8)
    q = np.bincount(current, minlength=8)
    result = ks_binned(p, q, reference_size=reference.size)
    scipy_result = stats.ks_2samp(reference, current, method="asymp")
    assert result.statistic == pytest.approx(scipy_result.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(scipy_result.pvalue, abs=5e-3)


def _piecewise_uniform_points(
    knots: np.ndarray, weights: np.ndarray, per_bin: int
) -> tuple[np.ndarray, np.ndarray]:
    points, masses = [], []
    for left, right, w in zip(knots[:-1], knots[1:], weights, strict=True):
        points.append(left + (np.arange(per_bin) + 0.5) * (right - left) / per_bin)
        masses.append(np.full(per_bin, w / per_bin))
    return np.concatenate(points), np.concatenate(masses)


def test_wasserstein_binned_matches_scipy_on_the_piecewise_uniform_model() -> None:
    rng = np.random.default_rng(5)
    edges = np.sort(rng.normal(size=9))
    p = rng.dirichlet(np.ones(10))
    observed = rng.integers(0, 400, size=10)
    knots = np.concatenate([[outer_bounds(list(edges))[0]], edges, [outer_bounds(list(edges))[1]]])
    u, uw = _piecewise_uniform_points(knots, p, 4_000)
    v, vw = _piecewise_uniform_points(knots, observed / observed.sum(), 4_000)
    expected = stats.wasserstein_distance(u, v, uw, vw)
    assert wasserstein_binned(edges, p, observed) == pytest.approx(expected, rel=1e-3)


def test_wasserstein_binned_of_a_whole_bin_shift_is_the_bin_width() -> None:
    # All mass in [0, 1) moves to [1, 2): W1 is exactly 1.
    assert wasserstein_binned([0.0, 1.0, 2.0], [0, 1, 0, 0], [0, 0, 5, 0]) == pytest.approx(1.0)
    # Uniform on [-4, 0) vs uniform on [1, 3]: one CDF dominates, so W1 = difference of means.
    assert wasserstein_binned([0.0, 1.0], [1, 0, 0], [0, 0, 3], lower=-4, upper=3) == pytest.approx(
        4.0
    )


def test_binned_mean_std_of_uniform_bins() -> None:
    mean, std = binned_mean_std([1.0, 2.0, 3.0], [1, 1, 1, 1])
    assert mean == pytest.approx(2.0)
    assert std == pytest.approx(4 / math.sqrt(12))


@pytest.mark.parametrize(
    ("expected", "observed", "message"),
    [
        ([0.5, 0.5], [1, 2, 3], "2 bins but observed has 3"),
        ([0.5, -0.5], [1, 2], "negative"),
        ([0.5, 0.5], [0, 0], "all zeros"),
        ([0.5, float("nan")], [1, 2], "non-finite"),
        ([], [], "non-empty"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    expected: list[float], observed: list[float], message: str
) -> None:
    for statistic in (psi, js_distance, chi2, ks_binned):
        with pytest.raises(DriftInputError, match=message):
            statistic(expected, observed)


def test_wasserstein_binned_refuses_mismatched_edges() -> None:
    with pytest.raises(DriftInputError, match="3 edges make 4 bins"):
        wasserstein_binned([0, 1, 2], [1, 1, 1], [1, 1, 1])
    with pytest.raises(DriftInputError, match="increasing"):
        wasserstein_binned([1, 0], [1, 1, 1], [1, 1, 1])
