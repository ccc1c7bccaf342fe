from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pilotage.api.dataset import Dataset
from pilotage.api.trainingjob import TrainingJob

# Every algorithm that fits a classification task.
CLASSIFIERS = [
    "logistic_regression",
    "random_forest",
    "gradient_boosting",
    "hist_gradient_boosting",
    "decision_tree",
]


def dataset(name: str, uri: str, **spec: Any) -> Dataset:
    return Dataset.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": name},
            "spec": {"source": {"uri": uri}, **spec},
        }
    )


def job(dataset_name: str, algorithm: str, name: str = "run-1", **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "datasetRef": {"name": dataset_name},
                "model": {"algorithm": algorithm},
                **spec,
            },
        }
    )


def manifests(path: Path, *resources: Dataset | TrainingJob) -> Path:
    path.write_text(yaml.safe_dump_all([r.dump() for r in resources], sort_keys=False))
    return path


def churn_frame(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    """A churn-like table: numeric and categorical columns, with missing values."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    purchases = rng.poisson(12, rows)
    country = rng.choice(["FR", "DE", "ES", "UK"], rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    score = -0.04 * (age - 45) - 0.15 * (purchases - 12) + np.where(country == "UK", 1.0, 0.0)
    churned = (score + rng.normal(0, 0.8, rows) > 0).astype(int)
    age[rng.random(rows) < 0.08] = np.nan
    country[rng.random(rows) < 0.06] = None
    return pd.DataFrame(
        {"age": age, "purchases": purchases, "country": country, "churned": churned}
    )


CHURN_SCHEMA = [
    {"name": "age", "type": "float", "min": 0, "max": 120},
    {"name": "purchases", "type": "int", "nullable": False, "min": 0},
    {"name": "country", "type": "category", "allowedValues": ["FR", "DE", "ES", "UK"]},
    {"name": "churned", "type": "int", "nullable": False},
]


@pytest.fixture
def churn_csv(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    churn_frame().to_csv(path, index=False)
    return path
