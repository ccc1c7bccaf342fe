"""Issue 17, champion and challenger with real models: the training run scores the champion's
own model.onnx (onnxruntime) on the very test rows the new model is scored on; the control
core then keeps a worse challenger as a rejected version and passes one as good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pilotage.api.trainingjob import TrainingJob
from pilotage.control.trainingjob import judge_champion
from pilotage.trainer.run import train
from tests.trainer.conftest import dataset, job


def _train(tmp_path: Path, name: str, algorithm: str, **spec: Any) -> tuple[TrainingJob, dict]:
    tj = job("iris", algorithm, name=name, **spec)
    out = (tmp_path / name).as_uri()
    summary = train(dataset("iris", "builtin://iris"), tj, out)
    assert summary["phase"] == "Succeeded", summary["message"]
    return tj, summary


def test_the_champion_is_scored_on_the_same_test_rows_and_a_worse_challenger_rejected(
    tmp_path: Path,
) -> None:
    _, v1 = _train(tmp_path, "v1", "logistic_regression")
    champion = {"uri": v1["modelUri"], "version": "v1"}
    gates = [{"metric": "accuracy", "min": 0.5}]
    stump, worse = _train(
        tmp_path,
        "stump",
        "decision_tree",
        model={"algorithm": "decision_tree", "hyperparameters": {"max_depth": 1}},
        evaluation={"gates": gates, "champion": champion},
    )
    # the champion's ONNX answers on the split's test rows score what v1 reported for itself
    assert worse["champion"]["metrics"]["accuracy"] == v1["metrics"]["accuracy"]
    assert worse["metrics"]["accuracy"] < v1["metrics"]["accuracy"]
    verdict = judge_champion(stump, worse["metrics"], worse["champion"])
    assert verdict is not None and verdict.passed is False
    assert verdict.metrics["accuracy"] == v1["metrics"]["accuracy"]

    twin, same = _train(tmp_path, "twin", "logistic_regression",
                        evaluation={"gates": gates, "champion": champion})  # fmt: skip
    verdict = judge_champion(twin, same["metrics"], same["champion"])
    assert verdict is not None and verdict.passed is True


def test_a_champion_that_cannot_be_scored_leaves_the_gates_to_judge(tmp_path: Path) -> None:
    _, v1 = _train(tmp_path, "v1", "logistic_regression")
    (Path(v1["modelUri"].removeprefix("file://")) / "model.onnx").write_bytes(b"not onnx")
    _, summary = _train(
        tmp_path, "next", "logistic_regression",
        evaluation={"champion": {"uri": v1["modelUri"]}},
    )  # fmt: skip
    assert "error" in summary["champion"] and "metrics" not in summary["champion"]
    missing = (tmp_path / "nowhere").as_uri()
    _, summary = _train(
        tmp_path, "again", "logistic_regression", evaluation={"champion": {"uri": missing}}
    )
    assert "error" in summary["champion"]
