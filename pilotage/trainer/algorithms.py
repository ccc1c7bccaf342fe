"""The estimators behind each `spec.model.algorithm`, per task."""

from __future__ import annotations

from typing import Any

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
from pilotage.trainer.errors import TrainingError

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
        raise TrainingError(
            f"unknown algorithm {algorithm!r}; use one of {', '.join(sorted(ESTIMATORS))}"
        )
    cls = by_task.get(task)
    if cls is None:
        fitting = sorted(a for a, tasks in ESTIMATORS.items() if task in tasks)
        raise TrainingError(
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
        raise TrainingError(
            f"spec.model.hyperparameters: {', '.join(unknown)} not a parameter of "
            f"{cls.__name__} (it takes {', '.join(sorted(known))})"
        )
    params.update(hyperparameters)
    estimator.set_params(**params)
    return estimator


def tunable_parameters(algorithm: str, task: Task) -> set[str]:
    cls = ESTIMATORS[algorithm][task]
    return set(cls().get_params())
