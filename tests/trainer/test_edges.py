"""Odd but plausible tables: each ends in a clear Failed message, never an internal error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pilotage.trainer.run import profile, train
from tests.trainer.conftest import dataset, job


def _csv(tmp_path: Path, frame: pd.DataFrame) -> str:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path.as_uri()


def test_a_class_only_in_the_test_split_is_named(tmp_path: Path) -> None:
    # One row of class 2: stratification cannot apply, and seed 0 puts that row in the test split.
    frame = pd.DataFrame({"a": range(20), "y": [0] * 10 + [1] * 9 + [2]})
    ds = dataset("d", _csv(tmp_path, frame), target="y", split={"testFraction": 0.25, "seed": 0})
    summary = train(ds, job("d", "logistic_regression"), (tmp_path / "model").as_uri())
    assert summary["phase"] == "Failed"
    assert "internal error" not in summary["message"], summary["message"]
    assert "the training split has no row of class(es) 2 (1 rows)" in summary["message"]
    assert not (tmp_path / "model").exists()


def test_infinite_values_are_a_type_mismatch(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": range(20), "y": [i % 2 for i in range(20)]}).astype(float)
    frame.loc[3, "y"] = float("inf")
    frame.loc[5, "a"] = float("-inf")
    ds = dataset("d", _csv(tmp_path, frame), target="y")
    summary = train(ds, job("d", "logistic_regression"), (tmp_path / "model").as_uri())
    assert summary["phase"] == "Failed"
    assert (
        "column a: typeMismatch (1) 1 values are not of type float (1 infinite)"
        in (summary["message"])
    )
    assert "column y: typeMismatch (1)" in summary["message"]
    profiled = profile(ds, None)
    assert profiled["phase"] == "Failed" and "typeMismatch" in profiled["message"]


def test_the_control_planes_hyperparameter_table_matches_scikit_learn() -> None:
    # The control plane refuses a misspelled hyperparameter from this table (it cannot
    # import scikit-learn); a scikit-learn upgrade that changes a signature fails here.
    from pilotage.api.trainingjob import ALGORITHM_PARAMETERS
    from pilotage.trainer.algorithms import ESTIMATORS

    assert set(ALGORITHM_PARAMETERS) == set(ESTIMATORS)
    for algorithm, by_task in ESTIMATORS.items():
        assert set(ALGORITHM_PARAMETERS[algorithm]) == set(by_task), algorithm
        for task, cls in by_task.items():
            assert ALGORITHM_PARAMETERS[algorithm][task] == set(cls().get_params()), (
                algorithm,
                task,
            )


def test_a_mismatched_cell_is_not_also_a_missing_value(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "flag": ["true", "maybe", "false", None] * 5,
            "size": [1.0, 2.0, -1.0, 3.0] * 5,
            "y": [0, 1] * 10,
        }
    )
    schema = [
        {"name": "flag", "type": "bool"},
        {"name": "size", "type": "float", "min": 0},
    ]
    ds = dataset("d", _csv(tmp_path, frame), target="y", schema=schema)
    findings = {(f["column"], f["kind"]): f for f in profile(ds, None)["findings"]}
    assert findings[("flag", "typeMismatch")]["count"] == 5  # the five "maybe"
    assert findings[("flag", "missing")]["count"] == 5  # the five real nulls only
    # Only the bound that was crossed, as a number: not "0 above max None".
    assert findings[("size", "outOfRange")]["message"] == "5 below min 0"
    every_cell_wrong = pd.DataFrame({"flag": ["maybe"] * 20, "y": [0, 1] * 10})
    ds = dataset("d", _csv(tmp_path, every_cell_wrong), target="y", schema=schema[:1])
    kinds = [(f["column"], f["kind"]) for f in profile(ds, None)["findings"]]
    assert ("flag", "typeMismatch") in kinds and ("flag", "allNull") not in kinds
