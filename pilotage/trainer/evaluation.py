"""Metrics on the test split and the gates that decide whether a model is deployable."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

from pilotage.api.modelcard import Task
from pilotage.api.trainingjob import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    Gate,
    GateResult,
    GatesStatus,
)
from pilotage.trainer.errors import SpecError


def task_metrics(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, classes: list[Any]
) -> tuple[dict[str, float], list[list[int]]]:
    """Scores and the confusion matrix (rows: true class, columns: predicted, in `classes` order).

    With two classes, precision/recall/F1 are those of the positive class (the second
    class); with more, they are support-weighted averages. ``*_macro`` are unweighted.
    """
    binary = len(classes) == 2
    average: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]} if binary else {"average": "weighted"}
    )
    out = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, zero_division=0, **average),
        "recall": skm.recall_score(y_true, y_pred, zero_division=0, **average),
        "f1": skm.f1_score(y_true, y_pred, zero_division=0, **average),
        "precision_macro": skm.precision_score(
            y_true, y_pred, average="macro", labels=classes, zero_division=0
        ),
        "recall_macro": skm.recall_score(
            y_true, y_pred, average="macro", labels=classes, zero_division=0
        ),
        "f1_macro": skm.f1_score(y_true, y_pred, average="macro", labels=classes, zero_division=0),
        "log_loss": skm.log_loss(y_true, proba, labels=classes),
    }
    present = set(np.unique(y_true).tolist())
    if len(present) == len(classes):
        if binary:
            out["roc_auc"] = skm.roc_auc_score(y_true == classes[1], proba[:, 1])
        else:
            out["roc_auc"] = skm.roc_auc_score(
                y_true, proba, multi_class="ovr", average="macro", labels=classes
            )
    # ROC AUC is undefined when the test split lacks a class; it is then left out.
    matrix = skm.confusion_matrix(y_true, y_pred, labels=classes)
    return {k: float(v) for k, v in out.items()}, matrix.astype(int).tolist()


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def check_gate_metrics(gates: list[Gate], task: Task) -> None:
    allowed = task_metrics(task)
    for gate in gates:
        if gate.metric not in allowed:
            raise SpecError(
                f"spec.evaluation.gates: {gate.metric} is not a {task} metric "
                f"(use one of {', '.join(allowed)})"
            )


def evaluate_gates(gates: list[Gate], metrics: dict[str, float]) -> GatesStatus:
    results = []
    for gate in gates:
        value = metrics.get(gate.metric)
        passed = (
            value is not None
            and not math.isnan(value)
            and (gate.min is None or value >= gate.min)
            and (gate.max is None or value <= gate.max)
        )
        results.append(
            GateResult(metric=gate.metric, value=value, min=gate.min, max=gate.max, passed=passed)
        )
    return GatesStatus(passed=all(r.passed for r in results), results=results)


def reported_metrics(
    all_metrics: dict[str, float], wanted: list[str], gates: list[Gate]
) -> dict[str, float]:
    """The metrics the spec asks for (all when none are named), plus those that gates read."""
    names = list(wanted) or list(all_metrics)
    names += [g.metric for g in gates if g.metric not in names]
    return {n: all_metrics[n] for n in names if n in all_metrics}


def describe_gates(status: GatesStatus) -> str:
    failed = [r for r in status.results if not r.passed]
    if not failed:
        return "all gates passed" if status.results else "no gates"
    parts = []
    for r in failed:
        bound = " and ".join(
            x
            for x in (
                f">= {r.min:g}" if r.min is not None else "",
                f"<= {r.max:g}" if r.max is not None else "",
            )
            if x
        )
        value = "n/a" if r.value is None else f"{r.value:.4g}"
        parts.append(f"{r.metric}={value} (needs {bound})")
    return "gates failed: " + ", ".join(parts)


RESIDUAL_BINS = 20


def residual_histogram(y_true: Any, y_pred: Any, bins: int = RESIDUAL_BINS) -> dict[str, Any]:
    """Residuals (true - predicted) on the test split as a histogram, for the model card:
    ``edges`` (bins + 1, equal width over the observed range), ``counts``, ``mean``, ``std``."""
    residuals = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    residuals = residuals[np.isfinite(residuals)]
    if residuals.size == 0:
        return {"edges": [], "counts": [], "mean": None, "std": None}
    low, high = float(residuals.min()), float(residuals.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(residuals, bins=bins, range=(low, high))
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "mean": float(residuals.mean()),
        "std": float(residuals.std()),
    }
