"""A CSV with categorical columns and missing values, through every classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from pilotage.api.modelcard import ModelCard
from pilotage.server.model import load_model
from pilotage.trainer.run import profile, train
from tests.trainer.conftest import CHURN_SCHEMA, CLASSIFIERS, churn_frame, dataset, job


def _churn(csv: Path, **spec: object) -> object:
    return dataset(
        "churn",
        csv.as_uri(),
        target="churned",
        schema=CHURN_SCHEMA,
        split={"testFraction": 0.25, "seed": 1},
        **spec,
    )


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_churn_table_every_classifier(tmp_path: Path, churn_csv: Path, algorithm: str) -> None:
    out = tmp_path / "model"
    hyper = {"n_estimators": 30} if algorithm in ("random_forest", "gradient_boosting") else {}
    summary = train(
        _churn(churn_csv),
        job("churn", algorithm, model={"algorithm": algorithm, "hyperparameters": hyper}),
        out.as_uri(),
    )
    assert summary["phase"] == "Succeeded", summary["message"]
    assert summary["onnxParity"]["maxAbsDiff"] <= 1e-4
    assert summary["onnxParity"]["labelAgreement"] == 1.0
    card = ModelCard.from_json((out / "model.json").read_bytes())
    assert card.onnx.input_layout == "columns"
    assert [(t.name, t.datatype, t.shape) for t in card.onnx.inputs] == [
        ("age", "FP32", [-1, 1]),
        ("purchases", "FP32", [-1, 1]),
        ("country", "BYTES", [-1, 1]),
    ]
    country = card.features[2]
    assert country.type == "category" and sorted(country.categories or []) == [
        "DE",
        "ES",
        "FR",
        "UK",
    ]
    profile_ = card.baseline.features["country"]
    assert profile_.kind == "categorical" and 0.0 < profile_.null_rate < 0.15
    assert card.baseline.features["age"].null_rate > 0.0

    # Raw rows with nulls and an unseen category score in onnxruntime as the server sends them.
    session = ort.InferenceSession(str(out / "model.onnx"))
    feeds = {
        "age": np.array([[np.nan], [30.0], [70.0]], dtype=np.float32),
        "purchases": np.array([[3.0], [40.0], [12.0]], dtype=np.float32),
        "country": np.array([[""], ["FR"], ["Atlantis"]], dtype=object),
    }
    labels, proba = session.run(["label", "probabilities"], feeds)
    assert labels.dtype == np.int64 and set(labels.tolist()) <= {0, 1}
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_model_server_loads_the_churn_model(tmp_path: Path, churn_csv: Path) -> None:
    out = tmp_path / "model"
    summary = train(_churn(churn_csv), job("churn", "logistic_regression"), out.as_uri())
    assert summary["phase"] == "Succeeded", summary["message"]
    loaded = load_model(out.as_uri(), tmp_path / "cache")
    assert [t.name for t in loaded.inputs] == ["age", "purchases", "country"]


def test_string_classes_give_a_string_label(tmp_path: Path) -> None:
    frame = churn_frame(300)
    frame["churned"] = np.where(frame["churned"] == 1, "yes", "no")
    csv = tmp_path / "churn.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "model"
    summary = train(
        dataset("churn", csv.as_uri(), target="churned"),
        job("churn", "decision_tree"),
        out.as_uri(),
    )
    assert summary["phase"] == "Succeeded", summary["message"]
    card = ModelCard.from_json((out / "model.json").read_bytes())
    assert card.classes == ["no", "yes"]
    assert next(o for o in card.onnx.outputs if o.name == "label").datatype == "BYTES"


def test_parquet_source_and_one_hot_off(tmp_path: Path) -> None:
    path = tmp_path / "churn.parquet"
    churn_frame(300).to_parquet(path)
    out = tmp_path / "model"
    summary = train(
        dataset("churn", path.as_uri(), target="churned"),
        job(
            "churn",
            "random_forest",
            model={"algorithm": "random_forest", "hyperparameters": {"n_estimators": 10}},
            preprocessing={"oneHot": False, "scale": "robust", "impute": {"numeric": "mean"}},
        ),
        out.as_uri(),
    )
    assert summary["phase"] == "Succeeded", summary["message"]
    assert summary["onnxParity"]["maxAbsDiff"] <= 1e-4


def test_search_grid_and_random(tmp_path: Path, churn_csv: Path) -> None:
    grid = train(
        _churn(churn_csv),
        job(
            "churn",
            "logistic_regression",
            search={
                "type": "grid",
                "parameters": {"C": [0.01, 1.0]},
                "cvFolds": 3,
                "metric": "roc_auc",
            },
        ),
        (tmp_path / "grid").as_uri(),
    )
    assert grid["phase"] == "Succeeded", grid["message"]
    card = ModelCard.from_json((tmp_path / "grid" / "model.json").read_bytes())
    assert card.hyperparameters["C"] in (0.01, 1.0)
    rand = train(
        _churn(churn_csv),
        job(
            "churn",
            "decision_tree",
            search={
                "type": "random",
                "parameters": {"max_depth": [2, 3, 4, 5], "min_samples_leaf": [1, 5]},
                "maxTrials": 3,
                "cvFolds": 3,
            },
        ),
        (tmp_path / "random").as_uri(),
    )
    assert rand["phase"] == "Succeeded", rand["message"]
    too_big = train(
        _churn(churn_csv),
        job(
            "churn",
            "decision_tree",
            search={
                "parameters": {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 2]},
                "maxTrials": 4,
            },
        ),
        (tmp_path / "big").as_uri(),
    )
    assert too_big["phase"] == "Failed"
    assert "6 combinations, more than maxTrials=4" in too_big["message"]


def test_failed_gate_still_writes_the_model(tmp_path: Path, churn_csv: Path) -> None:
    out = tmp_path / "model"
    summary = train(
        _churn(churn_csv),
        job(
            "churn",
            "logistic_regression",
            evaluation={
                "metrics": ["accuracy"],
                "gates": [{"metric": "accuracy", "min": 0.999}, {"metric": "log_loss", "max": 5}],
            },
        ),
        out.as_uri(),
    )
    assert summary["phase"] == "Succeeded"
    assert summary["gates"]["passed"] is False
    first, second = summary["gates"]["results"]
    assert (first["metric"], first["passed"], first["min"]) == ("accuracy", False, 0.999)
    assert (second["metric"], second["passed"]) == ("log_loss", True)
    assert set(summary["metrics"]) == {"accuracy", "log_loss"}
    assert "accuracy=" in summary["message"] and "needs >= 0.999" in summary["message"]
    assert (out / "model.onnx").is_file()
    assert ModelCard.from_json((out / "model.json").read_bytes()).gates["passed"] is False


def test_gate_on_a_metric_of_the_other_task_is_refused(tmp_path: Path, churn_csv: Path) -> None:
    summary = train(
        _churn(churn_csv),
        job("churn", "logistic_regression", evaluation={"gates": [{"metric": "r2", "min": 0.5}]}),
        (tmp_path / "m").as_uri(),
    )
    assert summary["phase"] == "Failed"
    assert "r2 is not a classification metric" in summary["message"]


def test_profile_reports_findings_and_writes_the_profile(tmp_path: Path, churn_csv: Path) -> None:
    summary = profile(_churn(churn_csv), (tmp_path / "profile").as_uri())
    assert summary["phase"] == "Ready", summary["message"]
    assert (summary["rows"], summary["columns"]) == (400, 4)
    missing = {f["column"]: f for f in summary["findings"] if f["kind"] == "missing"}
    frame = pd.read_csv(churn_csv)
    assert missing["age"]["count"] == int(frame["age"].isna().sum())
    assert missing["country"]["count"] == int(frame["country"].isna().sum())
    assert missing["age"]["severity"] == "warning"
    assert summary["profileUri"] == (tmp_path / "profile").as_uri() + "/profile.json"
    assert (tmp_path / "profile" / "profile.json").is_file()
