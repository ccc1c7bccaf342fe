"""Training and export on scikit-learn's builtin data sets, every algorithm."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn import datasets as skd

from pilotage.api.modelcard import ModelCard
from pilotage.api.trainingjob import TrainingJobStatus
from pilotage.trainer.run import train
from tests.trainer.conftest import CLASSIFIERS, dataset, job

REGRESSORS = [
    "linear_regression",
    "ridge",
    "random_forest",
    "gradient_boosting",
    "hist_gradient_boosting",
    "decision_tree",
]
SMALL = {"random_forest": {"n_estimators": 30}, "gradient_boosting": {"n_estimators": 30}}


def _train(tmp_path: Path, name: str, algorithm: str, **job_spec: object) -> tuple[dict, Path]:
    out = tmp_path / f"{name}-{algorithm}"
    hyper = SMALL.get(algorithm, {})
    spec = {"model": {"algorithm": algorithm, "hyperparameters": hyper}, **job_spec}
    summary = train(
        dataset(name.replace("_", "-"), f"builtin://{name}"),
        job(name.replace("_", "-"), algorithm, **spec),
        out.as_uri(),
    )
    return summary, out


def _card(out: Path) -> ModelCard:
    return ModelCard.from_json((out / "model.json").read_bytes())


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_every_classifier_converts_with_parity_on_iris(tmp_path: Path, algorithm: str) -> None:
    summary, out = _train(tmp_path, "iris", algorithm)
    assert summary["phase"] == "Succeeded", summary["message"]
    assert summary["onnxParity"]["maxAbsDiff"] <= 1e-4
    assert summary["onnxParity"]["labelAgreement"] == 1.0
    card = _card(out)
    assert card.onnx.sha256 == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert card.onnx.input_layout == "matrix"
    assert card.classes == [0, 1, 2]
    # The graph answers on raw rows the way the card says.
    x, y = skd.load_iris(return_X_y=True)
    session = ort.InferenceSession(str(out / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input"]
    labels, proba = session.run(["label", "probabilities"], {"input": x.astype(np.float32)})
    assert proba.shape == (150, 3) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert labels.dtype == np.int64
    assert float(np.mean(labels == y)) > 0.85


@pytest.mark.parametrize("algorithm", REGRESSORS)
def test_every_regressor_converts_with_parity_on_diabetes(tmp_path: Path, algorithm: str) -> None:
    summary, out = _train(tmp_path, "diabetes", algorithm)
    assert summary["phase"] == "Succeeded", summary["message"]
    assert summary["onnxParity"]["maxAbsDiff"] <= 1e-4
    assert set(summary["metrics"]) == {"mae", "mse", "rmse", "r2"}
    card = _card(out)
    assert card.task == "regression" and card.classes is None
    assert card.onnx.label_output == "variable" and card.onnx.probabilities_output is None
    (output,) = card.onnx.outputs
    assert (output.name, output.datatype, output.shape) == ("variable", "FP32", [-1, 1])
    assert card.baseline.predictions.kind == "numeric"


def test_regression_card_has_the_residuals_of_the_test_split(tmp_path: Path) -> None:
    summary, out = _train(tmp_path, "diabetes", "ridge")
    assert summary["phase"] == "Succeeded", summary["message"]
    residuals = _card(out).metrics["residuals"]
    edges, counts = residuals["edges"], residuals["counts"]
    assert len(edges) == len(counts) + 1 and edges == sorted(edges)
    test_rows = round(442 * 0.2)  # the split's default test fraction
    assert abs(sum(counts) - test_rows) <= 1
    # the histogram agrees with the card's own metrics: |mean| <= MAE, std <= RMSE
    assert abs(residuals["mean"]) <= summary["metrics"]["mae"]
    assert residuals["std"] <= summary["metrics"]["rmse"] + 1e-9
    assert edges[0] <= residuals["mean"] <= edges[-1]


@pytest.mark.parametrize(
    ("name", "classes", "floor"),
    [("wine", [0, 1, 2], 0.85), ("breast_cancer", [0, 1], 0.9), ("digits", list(range(10)), 0.9)],
)
def test_other_builtin_data_sets(
    tmp_path: Path, name: str, classes: list[int], floor: float
) -> None:
    summary, out = _train(tmp_path, name, "logistic_regression")
    assert summary["phase"] == "Succeeded", summary["message"]
    assert summary["metrics"]["accuracy"] >= floor
    card = _card(out)
    assert card.classes == classes
    assert card.metrics["confusion_matrix"]["labels"] == classes
    matrix = np.array(card.metrics["confusion_matrix"]["matrix"])
    assert matrix.shape == (len(classes), len(classes))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(summary["metrics"]["accuracy"])


def test_summary_matches_the_status_fields(tmp_path: Path) -> None:
    summary, _ = _train(tmp_path, "breast_cancer", "logistic_regression")
    assert set(summary) == {
        "phase",
        "modelVersion",
        "modelUri",
        "metrics",
        "gates",
        "onnxParity",
        "datasetFingerprint",
        "message",
        "task",  # the task trained (inferred or given), shown by describe
        "search",  # the search's outcome (issue 15.10); null without a search
    }
    assert summary["task"] == "classification" and summary["search"] is None
    status = TrainingJobStatus.model_validate(summary)
    assert status.phase == "Succeeded" and status.model_version == "run-1"
    assert status.onnx_parity is not None and status.gates is not None and status.gates.passed
    # Binary metrics and ROC AUC are there, the confusion matrix is not.
    assert {"accuracy", "f1", "f1_macro", "roc_auc", "log_loss"} <= set(summary["metrics"])
    assert all(isinstance(v, float) for v in summary["metrics"].values())
    json.dumps(summary, allow_nan=False)


def test_card_and_baseline_follow_the_bin_convention(tmp_path: Path) -> None:
    summary, out = _train(
        tmp_path, "iris", "logistic_regression", modelName="flowers", version="2024-06"
    )
    card = _card(out)
    assert (card.name, card.version) == ("flowers", "2024-06")
    assert card.feature_names() == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert card.dataset.fingerprint == summary["datasetFingerprint"]
    assert card.baseline.rows == 120  # default 0.2 test split of 150 rows
    x, _ = skd.load_iris(return_X_y=True)
    for j, feature in enumerate(card.features):
        profile = card.baseline.features[feature.name]
        assert profile.kind == "numeric"
        assert 2 <= len(profile.edges) <= 9 and profile.edges == sorted(set(profile.edges))
        assert len(profile.proportions) == len(profile.edges) + 1
        assert sum(profile.proportions) == pytest.approx(1.0)
        # Serving rows arrive as float32: the whole data set binned that way lands
        # close to the training proportions.
        bins = np.searchsorted(profile.edges, x[:, j].astype(np.float32), side="right")
        shares = np.bincount(bins, minlength=len(profile.proportions)) / len(x)
        assert np.abs(shares - profile.proportions).max() < 0.08
    predictions = card.baseline.predictions
    assert predictions.kind == "categorical" and predictions.categories == ["0", "1", "2"]
    assert len(predictions.proportions) == 4 and predictions.proportions[-1] == 0.0


def test_hyperparameters_and_seed_reach_the_estimator(tmp_path: Path) -> None:
    summary, out = _train(
        tmp_path,
        "iris",
        "random_forest",
        seed=7,
        model={
            "algorithm": "random_forest",
            "hyperparameters": {"n_estimators": 5, "max_depth": 2},
        },
    )
    assert summary["phase"] == "Succeeded", summary["message"]
    params = _card(out).hyperparameters
    assert (params["n_estimators"], params["max_depth"], params["random_state"]) == (5, 2, 7)


@pytest.mark.parametrize(
    ("algorithm", "hyperparameters", "reason"),
    [
        ("random_forest", {"n_trees": 5}, "n_trees not a parameter of RandomForestClassifier"),
        ("logistic_regression", {"C": -1}, "fitting logistic_regression failed"),
        ("ridge", {}, "ridge does not do classification"),
    ],
)
def test_bad_model_spec_fails_cleanly(
    tmp_path: Path, algorithm: str, hyperparameters: dict, reason: str
) -> None:
    out = tmp_path / "model"
    summary = train(
        dataset("iris", "builtin://iris"),
        job("iris", algorithm, model={"algorithm": algorithm, "hyperparameters": hyperparameters}),
        out.as_uri(),
    )
    assert summary["phase"] == "Failed"
    assert reason in summary["message"]
    assert summary["modelUri"] is None
    assert not out.exists()
