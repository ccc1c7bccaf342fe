"""The preprocessing + estimator Pipeline, shaped so that it converts to one ONNX graph.

Two input layouts, matching the model server:

* ``matrix`` (every feature numeric): the pipeline is fitted on one float32 array;
* ``columns`` (some feature categorical): the pipeline is fitted on a DataFrame whose
  numeric columns are float32 and whose categorical columns hold strings, with ``""``
  standing for a missing category (what the server feeds for a null).

Numeric values are cast to float32 before fitting, scaled in float32 exactly as the
ONNX ``Scaler`` operator does (:mod:`pilotage.trainer.scaling`) and cast to float32
again after the numeric steps, so that scikit-learn fits the model on exactly the
numbers onnxruntime computes with; otherwise a tree threshold can fall between a
float64 and a float32 rendering of the same scaled value and the runtimes disagree.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from skl2onnx.sklapi import CastTransformer
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from pilotage.api.modelcard import Task
from pilotage.api.trainingjob import PreprocessingSpec
from pilotage.drift.baseline import top_categories
from pilotage.trainer.scaling import Float32Scaler
from pilotage.trainer.validate import Column

Layout = Literal["matrix", "columns"]
MISSING_CATEGORY = ""
IMPUTED_CATEGORY = "missing"


def layout_of(features: list[Column]) -> Layout:
    return "columns" if any(f.type == "category" for f in features) else "matrix"


def model_input(frame: pd.DataFrame, features: list[Column]) -> Any:
    """The features as the pipeline (and the ONNX graph) take them."""
    if layout_of(features) == "matrix":
        return frame[[f.name for f in features]].to_numpy(dtype=np.float32)
    data: dict[str, Any] = {}
    for f in features:
        if f.type == "category":
            data[f.name] = np.array(
                [MISSING_CATEGORY if v is None else str(v) for v in frame[f.name]], dtype=object
            )
        else:
            data[f.name] = frame[f.name].to_numpy(dtype=np.float32)
    return pd.DataFrame(data)


def _scaler(kind: str) -> BaseEstimator | None:
    if kind == "none":
        return None
    return Float32Scaler(method=kind)  # type: ignore[arg-type]


def _numeric_steps(spec: PreprocessingSpec) -> Pipeline:
    steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy=spec.impute.numeric, fill_value=0.0))
    ]
    scaler = _scaler(spec.scale)
    if scaler is not None:
        steps.append(("scale", scaler))
    steps.append(("cast", CastTransformer(dtype=np.float32)))
    return Pipeline(steps)


def _categorical_steps(spec: PreprocessingSpec, categories: list[list[str]]) -> Pipeline:
    imputer = SimpleImputer(
        missing_values=MISSING_CATEGORY,
        strategy=spec.impute.categorical,
        fill_value=IMPUTED_CATEGORY,
    )
    encoder: BaseEstimator
    if spec.one_hot:
        # Categories beyond maxCategories and categories unseen in training encode as
        # all zeros: they share one implicit "other" group.
        encoder = OneHotEncoder(categories=categories, handle_unknown="ignore", dtype=np.float32)
    else:
        encoder = OrdinalEncoder(
            categories=categories,
            handle_unknown="use_encoded_value",
            unknown_value=-1,
            dtype=np.float32,
        )
    return Pipeline([("impute", imputer), ("encode", encoder)])


def encoder_categories(
    x: pd.DataFrame, features: list[Column], spec: PreprocessingSpec
) -> dict[str, list[str]]:
    """The categories each categorical feature is encoded with (after imputation)."""
    out: dict[str, list[str]] = {}
    for f in features:
        if f.type != "category":
            continue
        values = [v for v in x[f.name] if v != MISSING_CATEGORY]
        if spec.impute.categorical == "constant" and (x[f.name] == MISSING_CATEGORY).any():
            values.append(IMPUTED_CATEGORY)
        out[f.name] = sorted(top_categories(values, spec.max_categories))
    return out


def build_pipeline(
    features: list[Column],
    spec: PreprocessingSpec,
    estimator: BaseEstimator,
    categories: dict[str, list[str]],
    task: Task,
) -> Pipeline:
    """Preprocessing then the estimator (the step named ``model``).

    Regressors run in float64 after preprocessing: their output is not bounded like a
    probability, and float32 sums over a hundred trees of values in the hundreds drift
    by more than the parity tolerance (the ONNX graph casts the result to FP32 at the end).
    """
    numeric = [f for f in features if f.type != "category"]
    categorical = [f for f in features if f.type == "category"]
    transformers: list[tuple[str, Any, Any]] = []
    if layout_of(features) == "matrix":
        transformers.append(("numeric", _numeric_steps(spec), list(range(len(features)))))
    else:
        if numeric:
            transformers.append(("numeric", _numeric_steps(spec), [f.name for f in numeric]))
        for f in categorical:
            transformers.append(
                (f"category_{f.name}", _categorical_steps(spec, [categories[f.name]]), [f.name])
            )
    prep = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    if task == "regression":
        return Pipeline(
            [("prep", prep), ("double", CastTransformer(dtype=np.float64)), ("model", estimator)]
        )
    return Pipeline([("prep", prep), ("model", estimator)])
