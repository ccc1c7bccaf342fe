"""Real trained model artifacts for the server tests (scikit-learn -> ONNX + model card).

Used until the shared tests/support/models.py builder exists; it writes the same
artifact layout the trainer does (model.onnx + model.json, DESIGN §5).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pilotage.api.modelcard import (
    Baseline,
    DatasetInfo,
    FeatureInfo,
    ModelCard,
    OnnxInfo,
    TensorInfo,
)
from pilotage.drift.baseline import categorical_profile, numeric_profile

OPSET = 17


@dataclass
class Artifact:
    directory: Path
    card: ModelCard = field(repr=False)
    estimator: Any = field(repr=False)
    frame: pd.DataFrame = field(repr=False)  # the training features, columns in card order

    @property
    def uri(self) -> str:
        return self.directory.as_uri()


def _write(
    dest: Path,
    onnx_model: Any,
    *,
    name: str,
    version: str,
    task: str,
    algorithm: str,
    features: list[FeatureInfo],
    target: str,
    classes: list[Any] | None,
    layout: str,
    inputs: list[TensorInfo],
    outputs: list[TensorInfo],
    label_output: str,
    probabilities_output: str | None,
    profiles: dict[str, Any],
    predictions: Any,
    rows: int,
) -> ModelCard:
    dest.mkdir(parents=True, exist_ok=True)
    raw = onnx_model.SerializeToString()
    (dest / "model.onnx").write_bytes(raw)
    card = ModelCard(
        name=name,
        version=version,
        task=task,  # type: ignore[arg-type]
        algorithm=algorithm,
        features=features,
        target=target,
        classes=classes,
        dataset=DatasetInfo(name=name, uri=f"builtin://{name}", fingerprint="0" * 64, rows=rows),
        created="2025-01-01T00:00:00Z",
        onnx=OnnxInfo(
            sha256=hashlib.sha256(raw).hexdigest(),
            opset=OPSET,
            inputLayout=layout,  # type: ignore[arg-type]
            inputs=inputs,
            outputs=outputs,
            labelOutput=label_output,
            probabilitiesOutput=probabilities_output,
        ),
        baseline=Baseline(rows=rows, features=profiles, predictions=predictions),
    )
    (dest / "model.json").write_text(card.to_json())
    return card


IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def build_iris(dest: Path, version: str = "v1") -> Artifact:
    """Iris logistic regression, matrix layout, integer classes 0/1/2."""
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    onnx_model = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    predicted = model.predict(x)
    card = _write(
        dest,
        onnx_model,
        name="iris",
        version=version,
        task="classification",
        algorithm="logistic_regression",
        features=[FeatureInfo(name=n, type="float", nullable=False) for n in IRIS_FEATURES],
        target="species",
        classes=[0, 1, 2],
        layout="matrix",
        inputs=[TensorInfo(name="input", datatype="FP32", shape=[-1, 4])],
        outputs=[
            TensorInfo(name="label", datatype="INT64", shape=[-1]),
            TensorInfo(name="probabilities", datatype="FP32", shape=[-1, 3]),
        ],
        label_output="label",
        probabilities_output="probabilities",
        profiles={n: numeric_profile(x[:, j]) for j, n in enumerate(IRIS_FEATURES)},
        predictions=categorical_profile([str(p) for p in predicted], ["0", "1", "2"]),
        rows=len(x),
    )
    return Artifact(dest, card, model, pd.DataFrame(x, columns=IRIS_FEATURES))


def build_diabetes(dest: Path, version: str = "v1") -> Artifact:
    """Diabetes ridge regression, matrix layout."""
    x, y = load_diabetes(return_X_y=True)
    names = [f"x{j}" for j in range(x.shape[1])]
    model = Ridge(alpha=0.5).fit(x, y)
    onnx_model = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    card = _write(
        dest,
        onnx_model,
        name="diabetes",
        version=version,
        task="regression",
        algorithm="ridge",
        features=[FeatureInfo(name=n, type="float") for n in names],
        target="progression",
        classes=None,
        layout="matrix",
        inputs=[TensorInfo(name="input", datatype="FP32", shape=[-1, x.shape[1]])],
        outputs=[TensorInfo(name="variable", datatype="FP32", shape=[-1, 1])],
        label_output="variable",
        probabilities_output=None,
        profiles={n: numeric_profile(x[:, j]) for j, n in enumerate(names)},
        predictions=numeric_profile(model.predict(x)),
        rows=len(x),
    )
    return Artifact(dest, card, model, pd.DataFrame(x, columns=names))


CHANNELS = ["web", "store", "phone"]


def churn_frame(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, rows).astype(np.float32),
            "channel": rng.choice(CHANNELS, rows, p=[0.5, 0.3, 0.2]),
            "vip": rng.integers(0, 2, rows).astype(np.float32),
            "items": rng.integers(1, 10, rows).astype(np.float32),
        }
    )
    score = (
        0.02 * frame["amount"]
        - 1.5 * frame["vip"]
        + (frame["channel"] == "phone") * 1.2
        - 0.1 * frame["items"]
    )
    target = np.where(score + rng.normal(0, 0.5, rows) > 0.6, "yes", "no")
    return frame, target


def build_churn(dest: Path, version: str = "v1") -> Artifact:
    """Synthetic churn classifier: columns layout, one categorical feature, string classes."""
    frame, target = churn_frame()
    numeric = ["amount", "vip", "items"]
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), numeric),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, target)
    initial = [
        ("amount", FloatTensorType([None, 1])),
        ("channel", StringTensorType([None, 1])),
        ("vip", FloatTensorType([None, 1])),
        ("items", FloatTensorType([None, 1])),
    ]
    onnx_model = convert_sklearn(
        model,
        initial_types=initial,
        options={id(model.named_steps["clf"]): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    features = [
        FeatureInfo(name="amount", type="float", nullable=False),
        FeatureInfo(name="channel", type="category", categories=CHANNELS, nullable=False),
        FeatureInfo(name="vip", type="bool", nullable=False),
        FeatureInfo(name="items", type="int", nullable=False),
    ]
    profiles: dict[str, Any] = {
        "amount": numeric_profile(frame["amount"].to_numpy()),
        "channel": categorical_profile(frame["channel"].tolist(), CHANNELS),
        "vip": numeric_profile(frame["vip"].to_numpy()),
        "items": numeric_profile(frame["items"].to_numpy()),
    }
    classes = [str(c) for c in model.classes_]
    card = _write(
        dest,
        onnx_model,
        name="churn",
        version=version,
        task="classification",
        algorithm="logistic_regression",
        features=features,
        target="churned",
        classes=classes,
        layout="columns",
        inputs=[
            TensorInfo(name=n, datatype="BYTES" if n == "channel" else "FP32", shape=[-1, 1])
            for n, _ in initial
        ],
        outputs=[
            TensorInfo(name="label", datatype="BYTES", shape=[-1]),
            TensorInfo(name="probabilities", datatype="FP32", shape=[-1, 2]),
        ],
        label_output="label",
        probabilities_output="probabilities",
        profiles=profiles,
        predictions=categorical_profile([str(p) for p in model.predict(frame)], classes),
        rows=len(frame),
    )
    return Artifact(dest, card, model, frame[["amount", "channel", "vip", "items"]])


def build_breast_cancer_forest(dest: Path, version: str = "v1", trees: int = 100) -> Artifact:
    """Breast-cancer random forest (the benchmark's heavier model), matrix layout."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_breast_cancer(return_X_y=True)
    names = [f"f{j}" for j in range(x.shape[1])]
    model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1).fit(x, y)
    onnx_model = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    card = _write(
        dest,
        onnx_model,
        name="breast_cancer",
        version=version,
        task="classification",
        algorithm="random_forest",
        features=[FeatureInfo(name=n, type="float") for n in names],
        target="malignant",
        classes=[0, 1],
        layout="matrix",
        inputs=[TensorInfo(name="input", datatype="FP32", shape=[-1, x.shape[1]])],
        outputs=[
            TensorInfo(name="label", datatype="INT64", shape=[-1]),
            TensorInfo(name="probabilities", datatype="FP32", shape=[-1, 2]),
        ],
        label_output="label",
        probabilities_output="probabilities",
        profiles={n: numeric_profile(x[:, j]) for j, n in enumerate(names)},
        predictions=categorical_profile([str(p) for p in model.predict(x)], ["0", "1"]),
        rows=len(x),
    )
    return Artifact(dest, card, model, pd.DataFrame(x, columns=names))
