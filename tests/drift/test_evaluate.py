"""evaluate(): verdicts per feature, per data set and for predictions, on real data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from pilotage.api.modelcard import Baseline, CategoricalProfile, NumericProfile
from pilotage.drift import (
    DriftInputError,
    Reservoir,
    categorical_profile,
    count_categorical,
    count_window,
    evaluate,
    numeric_profile,
)

SHIFTED = ("mean radius", "worst texture", "mean smoothness")


@pytest.fixture(scope="module")
def halves() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    data = load_breast_cancer()
    order = np.random.default_rng(0).permutation(data.data.shape[0])
    names = list(data.feature_names)
    half = data.data.shape[0] // 2
    train = {n: data.data[order[:half], i] for i, n in enumerate(names)}
    live = {n: data.data[order[half:], i] for i, n in enumerate(names)}
    labels = [str(data.target_names[t]) for t in data.target[order]]
    return train, live, labels


def _baseline(train: dict[str, np.ndarray], labels: list[str]) -> Baseline:
    return Baseline(
        rows=len(next(iter(train.values()))),
        features={n: numeric_profile(v) for n, v in train.items()},
        predictions=categorical_profile(labels),
    )


def _shift(live: dict[str, np.ndarray], train: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    moved = dict(live)
    for name in SHIFTED:
        moved[name] = live[name] + 1.0 * train[name].std()
    return moved


def test_unshifted_live_data_does_not_drift(halves) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    report = evaluate(baseline, count_window(baseline, live))
    assert report.samples == len(live["mean radius"])
    assert report.drifted_features == ()
    assert not report.dataset_drift
    assert report.phase == "Healthy"
    assert all(f.method == "psi" and f.threshold == 0.2 for f in report.features)


# JS and normalised Wasserstein's 0.1 defaults sit at the sampling noise of a 284-row
# window (unshifted features reach 0.14 and 0.11): the test uses thresholds above it.
@pytest.mark.parametrize(
    ("method", "threshold"),
    [
        ("psi", None),
        ("js", 0.25),
        ("wasserstein", 0.3),
        ("ks", None),
        ("chi2", None),
        ("auto", None),
    ],
)
def test_shifted_features_are_named_and_only_they(
    halves, method: str, threshold: float | None
) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    moved = count_window(baseline, _shift(live, train))
    report = evaluate(baseline, moved, method=method, threshold=threshold)
    assert set(report.drifted_features) == set(SHIFTED), report.to_dict()["features"]
    assert report.share_drifted == pytest.approx(3 / 30)
    assert not report.dataset_drift  # 3 of 30 is below driftShare 0.5
    scores = [report.feature(n).score for n in report.drifted_features]
    assert scores == sorted(scores, reverse=True)


def test_dataset_drift_when_the_share_of_drifted_features_reaches_drift_share(halves) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    moved = {n: v + train[n].std() for n, v in live.items()}
    report = evaluate(baseline, count_window(baseline, moved), drift_share=0.5)
    assert report.dataset_drift and report.phase == "Drifting"
    report = evaluate(baseline, count_window(baseline, _shift(live, train)), drift_share=0.1)
    assert report.dataset_drift


def test_too_few_rows_is_insufficient_data_and_never_drift(halves) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    few = {n: v[:50] + 10 * train[n].std() for n, v in live.items()}
    report = evaluate(baseline, count_window(baseline, few), min_samples=100)
    assert report.insufficient_data and report.phase == "InsufficientData"
    assert report.drifted_features == () and not report.dataset_drift
    assert report.max_score > 0.2  # scores are still reported
    assert evaluate(baseline, {}).samples == 0


def test_exact_ks_on_the_reservoir_matches_scipy(halves) -> None:  # type: ignore[no-untyped-def]
    from scipy import stats

    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    moved = _shift(live, train)
    reservoir = Reservoir(reference=train, current=moved)
    report = evaluate(baseline, count_window(baseline, moved), method="auto", reservoir=reservoir)
    assert set(report.drifted_features) == set(SHIFTED)
    radius = report.feature("mean radius")
    assert radius.method == "ks" and radius.exact and radius.threshold == 0.05
    expected = stats.ks_2samp(train["mean radius"], moved["mean radius"], method="asymp")
    assert radius.score == pytest.approx(expected.statistic)
    wasserstein = evaluate(
        baseline, count_window(baseline, moved), method="wasserstein", reservoir=reservoir
    ).feature("mean radius")
    assert wasserstein.exact
    assert wasserstein.score == pytest.approx(
        stats.wasserstein_distance(train["mean radius"], moved["mean radius"])
        / train["mean radius"].std()
    )


def test_binned_wasserstein_approximates_the_exact_one(halves) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    moved = _shift(live, train)
    binned = evaluate(baseline, count_window(baseline, moved), method="wasserstein")
    exact = evaluate(
        baseline,
        count_window(baseline, moved),
        method="wasserstein",
        reservoir=Reservoir(reference=train, current=moved),
    )
    for name in SHIFTED:
        assert binned.feature(name).score == pytest.approx(exact.feature(name).score, rel=0.25)


def test_prediction_drift_is_judged_on_the_class_counts(halves) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    window = count_window(baseline, live)
    same = count_categorical(baseline.predictions, labels[len(labels) // 2 :])  # type: ignore[arg-type]
    report = evaluate(baseline, window, same)
    assert report.prediction is not None and not report.prediction_drift
    flipped = {"malignant": 250, "benign": 30}
    report = evaluate(baseline, window, flipped)
    assert report.prediction_drift and report.to_dict()["predictionDrift"]["drifted"]


def test_auto_uses_chi2_on_categories_and_nulls_count_as_drift() -> None:
    rng = np.random.default_rng(3)
    colors = list(rng.choice(["red", "green", "blue"], p=[0.5, 0.3, 0.2], size=2_000))
    sizes = rng.normal(10, 2, size=2_000)
    baseline = Baseline(
        rows=2_000,
        features={"color": categorical_profile(colors), "size": numeric_profile(sizes)},
        predictions=CategoricalProfile(categories=["a", "b"], proportions=[0.5, 0.5, 0.0]),
    )
    live_colors = list(rng.choice(["red", "green", "purple"], p=[0.5, 0.3, 0.2], size=1_000))
    live_sizes = rng.normal(10, 2, size=1_000)
    live_sizes[:300] = np.nan
    report = evaluate(
        baseline, count_window(baseline, {"color": live_colors, "size": live_sizes}), method="auto"
    )
    color = report.feature("color")
    assert color.method == "chi2" and color.p_value is not None and color.p_value < 1e-10
    assert report.feature("size").method == "psi" and report.feature("size").drifted
    assert report.dataset_drift
    # ks/wasserstein on a category fall back to the nearest kind of test.
    assert evaluate(baseline, {"color": {"red": 5}}, method="ks").feature("color").method == "chi2"
    assert (
        evaluate(baseline, {"color": {"red": 5}}, method="wasserstein").feature("color").method
        == "js"
    )


def test_thresholds_per_method_and_per_feature(halves) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    window = count_window(baseline, _shift(live, train))
    loose = evaluate(baseline, window, threshold=50.0)
    assert loose.drifted_features == ()
    strict = evaluate(baseline, window, feature_thresholds={"mean area": 1e-6})
    assert "mean area" in strict.drifted_features
    assert strict.feature("mean area").threshold == 1e-6
    ks = evaluate(baseline, window, method="ks")
    assert {f.threshold for f in ks.features} == {0.05}
    for f in ks.features:
        assert f.drifted == (f.p_value is not None and f.p_value < 0.05)


def test_report_dict_has_the_status_shape(halves) -> None:  # type: ignore[no-untyped-def]
    train, live, labels = halves
    baseline = _baseline(train, labels[: len(labels) // 2])
    out = evaluate(baseline, count_window(baseline, _shift(live, train)), method="chi2").to_dict()
    assert set(out) == {
        "phase", "samples", "method", "features", "driftedFeatures", "shareDrifted",
        "driftShare", "datasetDrift", "predictionDrift", "insufficientData",
    }  # fmt: skip
    assert set(out["features"][0]) == {
        "name", "method", "score", "threshold", "drifted", "samples", "exact", "pValue",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "kl"}, "method must be one of"),
        ({"threshold": -1.0}, "threshold must be a positive number"),
        ({"drift_share": 0.0}, "drift_share must be in"),
        ({"min_samples": -1}, "min_samples"),
        ({"feature_thresholds": {"nope": 0.1}}, "unknown feature 'nope'"),
    ],
)
def test_bad_arguments_are_refused(halves, kwargs: dict, message: str) -> None:  # type: ignore[no-untyped-def, type-arg]
    train, _, labels = halves
    baseline = _baseline(train, labels)
    with pytest.raises(DriftInputError, match=message):
        evaluate(baseline, {}, **kwargs)


def test_bad_windows_are_refused_naming_feature_and_bin(halves) -> None:  # type: ignore[no-untyped-def]
    train, _, labels = halves
    baseline = _baseline(train, labels)
    with pytest.raises(DriftInputError, match="not in the baseline: ghost"):
        evaluate(baseline, {"ghost": {"0": 1}})
    with pytest.raises(DriftInputError, match="mean radius has no bin '42'"):
        evaluate(baseline, {"mean radius": {"42": 1}})
    with pytest.raises(DriftInputError, match="mean radius/0 is not a count"):
        evaluate(baseline, {"mean radius": {"0": -3}})


def test_reservoir_from_a_server_snapshot_and_a_single_bin_profile() -> None:
    from pilotage.api.modelcard import NumericProfile

    baseline = Baseline(
        rows=1_000,
        features={
            "x": numeric_profile(np.arange(1_000.0)),
            "empty": NumericProfile(edges=[], proportions=[1.0], null_rate=1.0),
        },
        predictions=NumericProfile(edges=[0.0], proportions=[0.5, 0.5]),
    )
    rows = [[float(v), None] for v in np.arange(500.0, 700.0)]
    reservoir = Reservoir.from_rows({"x": np.arange(1_000.0)}, ["x", "empty"], rows)
    assert reservoir.current["x"].shape == (200,)
    window = {"x": {"5": 100, "6": 100}, "empty": {"0": 0, "null": 200}}
    report = evaluate(baseline, window, method="ks", reservoir=reservoir)
    assert report.feature("x").exact and report.feature("x").drifted
    assert not report.feature("empty").drifted
    assert evaluate(baseline, window, method="wasserstein").feature("empty").score == 0.0
    with pytest.raises(DriftInputError, match="reservoir column x is not numeric"):
        Reservoir.from_rows({"x": [1.0]}, ["x"], [["red"]])


def test_binned_wasserstein_sees_a_two_valued_feature_move() -> None:
    # The trainer profiles a 0/1 feature (10 % ones) as one edge at 1 and two bins; the
    # outer bins must not collapse onto that edge.
    baseline = Baseline(
        rows=1000,
        features={"flag": NumericProfile(edges=[1.0], proportions=[0.9, 0.1], mean=0.1, std=0.3)},
        predictions=categorical_profile(["a"]),
    )
    moved = {"flag": np.array([0.0] * 100 + [1.0] * 900)}
    report = evaluate(baseline, count_window(baseline, moved), method="wasserstein")
    assert report.features[0].drifted
    assert report.features[0].score == pytest.approx(0.8)
    same = {"flag": np.array([0.0] * 900 + [1.0] * 100)}
    steady = evaluate(baseline, count_window(baseline, same), method="wasserstein")
    assert steady.features[0].score == pytest.approx(0.0, abs=1e-12)
    assert not steady.features[0].drifted
