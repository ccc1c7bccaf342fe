"""The distribution tails, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pilotage.drift import chi2_sf, kolmogorov_sf, ks_pvalue


@pytest.mark.parametrize("dof", [1, 2, 3, 7, 30, 250, 5000])
def test_chi2_sf_matches_scipy_over_the_whole_range(dof: int) -> None:
    for x in np.concatenate([[1e-9, 0.01, 0.5], np.linspace(0.1, 4 * dof + 80, 300)]):
        expected = stats.chi2.sf(x, dof)
        got = chi2_sf(float(x), dof)
        if expected > 1e-280:
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-300), (x, dof)
        else:
            assert got < 1e-250


def test_chi2_sf_edges() -> None:
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(-1.0, 3) == 1.0
    assert chi2_sf(float("inf"), 3) == 0.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi2_sf(1.0, 0)
    with pytest.raises(ValueError, match="NaN"):
        chi2_sf(float("nan"), 2)


def test_kolmogorov_sf_matches_scipy_kstwobign() -> None:
    for lam in np.linspace(0.0, 8.0, 1601):
        assert kolmogorov_sf(float(lam)) == pytest.approx(stats.kstwobign.sf(lam), abs=1e-12)


@pytest.mark.parametrize("n_eff", [1_000, 5_000, 90_909])
def test_ks_pvalue_close_to_scipy_exact_one_sample_distribution(n_eff: int) -> None:
    # scipy's two-sample "asymp" p-value is kstwo.sf(d, round(n_eff)).
    for d in np.linspace(0.2, 6.0, 40) / np.sqrt(n_eff):
        expected = stats.kstwo.sf(d, n_eff)
        assert ks_pvalue(float(d), n_eff) == pytest.approx(expected, abs=5e-3)
        if 0.005 < expected < 0.2:  # where verdicts are made, the error is small relative to p
            assert ks_pvalue(float(d), n_eff) == pytest.approx(expected, rel=0.03)


def test_ks_pvalue_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="effective sample size"):
        ks_pvalue(0.1, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ks_pvalue(1.5, 10)
