"""Optional hyperparameter search (grid or random) with cross-validation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    ParameterGrid,
    RandomizedSearchCV,
    StratifiedKFold,
)
from sklearn.pipeline import Pipeline

from pilotage.api.modelcard import Task
from pilotage.api.trainingjob import SearchSpec
from pilotage.trainer.errors import SpecError, TrainingError

# Metrics to maximise, in scikit-learn's scorer names (errors are negated).
SCORERS: dict[str, str] = {
    "accuracy": "accuracy",
    "precision": "precision_weighted",
    "recall": "recall_weighted",
    "f1": "f1_weighted",
    "precision_macro": "precision_macro",
    "recall_macro": "recall_macro",
    "f1_macro": "f1_macro",
    "roc_auc": "roc_auc_ovr",
    "log_loss": "neg_log_loss",
    "mae": "neg_mean_absolute_error",
    "mse": "neg_mean_squared_error",
    "rmse": "neg_root_mean_squared_error",
    "r2": "r2",
}
MODEL_STEP = "model"


def _scorer(metric: str | None, task: Task, binary: bool) -> str:
    if metric is None:
        return "accuracy" if task == "classification" else "r2"
    if binary and metric in ("precision", "recall", "f1"):
        return metric
    if binary and metric == "roc_auc":
        return "roc_auc"
    return SCORERS[metric]


def search(
    pipeline: Pipeline,
    spec: SearchSpec,
    task: Task,
    binary: bool,
    tunable: set[str],
    x: Any,
    y: Any,
    progress: Callable[[str], None],
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit the best pipeline found; return it with what the search chose, keyed as
    the TrainingJob's `status.search` (bestParameters, bestScore, scoring, trials, folds)."""
    if not spec.parameters:
        raise SpecError("spec.search.parameters is empty: name at least one hyperparameter")
    unknown = sorted(p for p in spec.parameters if p not in tunable)
    if unknown:
        raise SpecError(
            f"spec.search.parameters: {', '.join(unknown)} not a parameter of the model"
        )
    empty = sorted(p for p, values in spec.parameters.items() if not values)
    if empty:
        raise SpecError(f"spec.search.parameters: {', '.join(empty)} has no candidate values")
    grid = {f"{MODEL_STEP}__{k}": list(v) for k, v in spec.parameters.items()}
    combinations = len(ParameterGrid(grid))
    scoring = _scorer(spec.metric, task, binary)
    folds: KFold | StratifiedKFold = (
        StratifiedKFold(spec.cv_folds, shuffle=True, random_state=spec.seed)
        if task == "classification"
        else KFold(spec.cv_folds, shuffle=True, random_state=spec.seed)
    )
    searcher: GridSearchCV | RandomizedSearchCV
    if spec.type == "grid":
        if combinations > spec.max_trials:
            raise SpecError(
                f"spec.search: the grid has {combinations} combinations, more than "
                f"maxTrials={spec.max_trials}; raise maxTrials or use type: random"
            )
        searcher = GridSearchCV(pipeline, grid, scoring=scoring, cv=folds, n_jobs=1, refit=True)
        trials = combinations
    else:
        trials = min(spec.max_trials, combinations)
        searcher = RandomizedSearchCV(
            pipeline,
            grid,
            n_iter=trials,
            scoring=scoring,
            cv=folds,
            n_jobs=1,
            refit=True,
            random_state=spec.seed,
        )
    progress(f"search: {spec.type}, {trials} candidates x {spec.cv_folds} folds, scoring {scoring}")
    try:
        searcher.fit(x, y)
    except ValueError as exc:
        raise TrainingError(f"search failed: {str(exc).splitlines()[0]}") from exc
    best = {k.removeprefix(f"{MODEL_STEP}__"): v for k, v in searcher.best_params_.items()}
    score = float(searcher.best_score_)
    progress(f"search: best {best} (cv {scoring} {score:.4f})")
    result = {
        "bestParameters": best,
        "bestScore": score if math.isfinite(score) else None,
        "scoring": scoring,
        "trials": trials,
        "folds": spec.cv_folds,
    }
    return searcher.best_estimator_, result
