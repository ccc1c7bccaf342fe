"""The estimators behind each `spec.model.algorithm`, per task."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from pilotage.api.modelcard import Task
from pilotage.trainer.errors import SpecError

ESTIMATORS: dict[str, dict[str, type[BaseEstimator]]] = {
    "logistic_regression": {"classification": LogisticRegression},
    "random_forest": {
        "classification": RandomForestClassifier,
        "regression": RandomForestRegressor,
    },
    "gradient_boosting": {
        "classification": GradientBoostingClassifier,
        "regression": GradientBoostingRegressor,
    },
    "hist_gradient_boosting": {
        "classification": HistGradientBoostingClassifier,
        "regression": HistGradientBoostingRegressor,
    },
    "decision_tree": {
        "classification": DecisionTreeClassifier,
        "regression": DecisionTreeRegressor,
    },
    "linear_regression": {"regression": LinearRegression},
    "ridge": {"regression": Ridge},
}

# Defaults that differ from scikit-learn's: enough iterations for scaled data to converge.
DEFAULTS: dict[str, dict[str, Any]] = {"logistic_regression": {"max_iter": 1000}}


def make_estimator(
    algorithm: str, task: Task, hyperparameters: dict[str, Any], seed: int
) -> BaseEstimator:
    """A fresh estimator with the spec's hyperparameters; unknown names are refused."""
    by_task = ESTIMATORS.get(algorithm)
    if by_task is None:
        raise SpecError(
            f"unknown algorithm {algorithm!r}; use one of {', '.join(sorted(ESTIMATORS))}"
        )
    cls = by_task.get(task)
    if cls is None:
        fitting = sorted(a for a, tasks in ESTIMATORS.items() if task in tasks)
        raise SpecError(
            f"algorithm {algorithm} does not do {task}; for {task} use one of {', '.join(fitting)}"
        )
    estimator = cls()
    known = estimator.get_params()
    params: dict[str, Any] = dict(DEFAULTS.get(algorithm, {}))
    if "random_state" in known:
        params["random_state"] = seed
    if "n_jobs" in known:
        params["n_jobs"] = 1
    unknown = sorted(k for k in hyperparameters if k not in known)
    if unknown:
        raise SpecError(
            f"spec.model.hyperparameters: {', '.join(unknown)} not a parameter of "
            f"{cls.__name__} (it takes {', '.join(sorted(known))})"
        )
    params.update(hyperparameters)
    estimator.set_params(**params)
    return estimator


def tunable_parameters(algorithm: str, task: Task) -> set[str]:
    cls = ESTIMATORS[algorithm][task]
    return set(cls().get_params())


def _float32_floor(values: np.ndarray) -> np.ndarray:
    """The largest float32 value not above each value, as float64."""
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded.astype(np.float64)


def float32_safe_thresholds(estimator: BaseEstimator) -> None:
    """Move histogram-gradient-boosting split thresholds down onto float32 values.

    Its thresholds are float64 midpoints; ONNX stores them as float32, and a midpoint
    that rounds up onto a data value sends that value the other way. For float32 inputs
    (all the pipeline feeds it) ``x <= t`` holds exactly when ``x <= floor32(t)``, so the
    scikit-learn model predicts the same and the ONNX graph now agrees with it.
    """
    predictors = getattr(estimator, "_predictors", None)
    if not predictors:
        return
    for per_iteration in predictors:
        for predictor in per_iteration:
            nodes = predictor.nodes
            nodes["num_threshold"] = _float32_floor(nodes["num_threshold"])
