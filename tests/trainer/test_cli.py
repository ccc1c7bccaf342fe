"""`pilotage train` / `pilotage profile` as processes: exit codes, one-line errors, summary."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from pilotage.api.dataset import Dataset
from tests.support.procs import pilotage
from tests.trainer.conftest import CHURN_SCHEMA, churn_frame, dataset, job, manifests


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        pilotage(*args),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _failure_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_train_writes_model_summary_and_termination_log(tmp_path: Path) -> None:
    path = manifests(
        tmp_path / "m.yaml", dataset("iris", "builtin://iris"), job("iris", "decision_tree")
    )
    log = tmp_path / "termination-log"
    out = tmp_path / "models" / "iris" / "v1"
    result = run(
        "train",
        "-f",
        str(path),
        "--output",
        out.as_uri(),
        env={"PILOTAGE_TERMINATION_LOG": str(log)},
    )
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["phase"] == "Succeeded"
    assert summary["modelUri"] == out.as_uri()
    assert json.loads(log.read_text()) == summary
    assert "parity" in result.stderr and "loading builtin://iris" in result.stderr
    digest = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert json.loads((out / "model.json").read_text())["onnx"]["sha256"] == digest


def test_same_spec_gives_the_same_model_bytes(tmp_path: Path) -> None:
    """Two processes (different hash seeds), same spec, data and seed: same sha256."""
    frame = churn_frame(300)
    csv = tmp_path / "churn.csv"
    frame.to_csv(csv, index=False)
    ds = dataset("churn", csv.as_uri(), target="churned", schema=CHURN_SCHEMA)
    tj = job(
        "churn",
        "random_forest",
        model={"algorithm": "random_forest", "hyperparameters": {"n_estimators": 20}},
        seed=5,
    )
    path = manifests(tmp_path / "m.yaml", ds, tj)
    digests, metrics = [], []
    for i in range(2):
        out = tmp_path / f"out{i}"
        result = run(
            "train", "-f", str(path), "--output", out.as_uri(), env={"PYTHONHASHSEED": str(i + 1)}
        )
        assert result.returncode == 0, result.stderr
        digests.append(hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest())
        metrics.append(last_json(result.stdout)["metrics"])
    assert digests[0] == digests[1]
    assert metrics[0] == metrics[1]


def _bad_cases(tmp: Path) -> dict[str, tuple[Dataset, str]]:
    frame = churn_frame(60)
    good = tmp / "good.csv"
    frame.to_csv(good, index=False)
    no_target = tmp / "no-target.csv"
    frame.drop(columns=["churned"]).to_csv(no_target, index=False)
    wrong_type = tmp / "wrong-type.csv"
    typed = frame.astype({"purchases": object})
    typed.loc[[3, 7], "purchases"] = "many"
    typed.to_csv(wrong_type, index=False)
    all_null = tmp / "all-null.csv"
    frame.assign(age=float("nan")).to_csv(all_null, index=False)
    empty = tmp / "empty.csv"
    empty.write_text("")
    return {
        "missing target": (
            dataset("d", no_target.as_uri(), target="churned"),
            "target column 'churned' is not in the data",
        ),
        "unknown column": (
            dataset("d", good.as_uri(), target="churned", features=["age", "income"]),
            "spec.features names column(s) the data lacks: income",
        ),
        "wrong type": (
            dataset("d", wrong_type.as_uri(), target="churned", schema=CHURN_SCHEMA),
            "column purchases: typeMismatch (2)",
        ),
        "all-null column": (
            dataset("d", all_null.as_uri(), target="churned"),
            "column age: allNull (60)",
        ),
        "empty file": (dataset("d", empty.as_uri(), target="churned"), "is empty"),
        "unreachable URI": (
            dataset("d", "https://127.0.0.1:9/churn.csv", target="churned"),
            "cannot read https://127.0.0.1:9/churn.csv",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing target",
        "unknown column",
        "wrong type",
        "all-null column",
        "empty file",
        "unreachable URI",
    ],
)
def test_bad_data_ends_with_one_clear_line(tmp_path: Path, case: str) -> None:
    ds, reason = _bad_cases(tmp_path)[case]
    path = manifests(tmp_path / "m.yaml", ds, job("d", "logistic_regression"))
    out = tmp_path / "out" / "model"
    result = run("train", "-f", str(path), "--output", out.as_uri())
    assert result.returncode == 1
    line = _failure_line(result)
    assert line.startswith("pilotage train: failed: ") and reason in line, line
    assert "Traceback" not in result.stderr
    summary = last_json(result.stdout)
    assert summary["phase"] == "Failed" and reason in summary["message"]
    assert summary["modelUri"] is None
    assert not out.exists()
    assert not (out.parent.exists() and any(out.parent.iterdir()))


def test_profile_fails_on_schema_violations_with_counts(tmp_path: Path) -> None:
    frame = churn_frame(100)
    frame.loc[[1, 2, 3], "age"] = 150.0
    frame.loc[[4], "country"] = "Mars"
    csv = tmp_path / "d.csv"
    frame.to_csv(csv, index=False)
    path = manifests(
        tmp_path / "m.yaml", dataset("d", csv.as_uri(), target="churned", schema=CHURN_SCHEMA)
    )
    result = run("profile", "-f", str(path), "--output", (tmp_path / "p").as_uri())
    assert result.returncode == 1
    summary = last_json(result.stdout)
    assert summary["phase"] == "Failed" and summary["rows"] == 100
    errors = {
        (f["column"], f["kind"]): f["count"]
        for f in summary["findings"]
        if f["severity"] == "error"
    }
    assert errors == {("age", "outOfRange"): 3, ("country", "notAllowed"): 1}
    assert "outOfRange (3)" in _failure_line(result)
    assert not (tmp_path / "p").exists()


def test_profile_of_a_pvc_source(tmp_path: Path) -> None:
    claim = tmp_path / "pvc" / "data"
    claim.mkdir(parents=True)
    churn_frame(120).to_csv(claim / "churn.csv", index=False)
    path = manifests(tmp_path / "m.yaml", dataset("d", "pvc://data/churn.csv", target="churned"))
    result = run("profile", "-f", str(path), env={"PILOTAGE_PVC_ROOT": str(tmp_path / "pvc")})
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["phase"] == "Ready" and summary["rows"] == 120
    expected = hashlib.sha256((claim / "churn.csv").read_bytes()).hexdigest()
    assert summary["fingerprint"] == expected and summary["profileUri"] is None


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--output", "file:///tmp/x"], "the following arguments are required: -f/--filename"),
        (["-f", "MISSING.yaml", "--output", "file:///tmp/x"], "cannot read MISSING.yaml"),
    ],
)
def test_usage_errors_exit_2(args: list[str], reason: str) -> None:
    result = run("train", *args)
    assert result.returncode == 2
    assert reason in _failure_line(result)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe not text", "is not a text file (byte 0 is not UTF-8)"),
        (b"kind: Dataset\nmetadata: {name: x\n", "not valid YAML: line 3, column 1: "),
    ],
    ids=["binary", "malformed-yaml"],
)
def test_unreadable_manifests_are_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(content)
    for command in ("train", "profile"):
        result = run(command, "-f", str(path), "--output", (tmp_path / "o").as_uri())
        assert result.returncode == 2, result.stderr
        assert reason in _failure_line(result)
        assert "Traceback" not in result.stderr
        assert last_json(result.stdout)["phase"] == "Failed"


def test_invalid_manifest_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "apiVersion: pilotage.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: j}\n"
        "spec: {datasetRef: {name: d}, model: {algorithm: svm}}\n"
    )
    result = run("train", "-f", str(path), "--output", (tmp_path / "o").as_uri())
    assert result.returncode == 2
    assert "spec.model.algorithm" in _failure_line(result)
    assert last_json(result.stdout)["phase"] == "Failed"


def test_churn_example_trains(tmp_path: Path) -> None:
    """The example a user copies works as written (relative file:// URI from the repo root)."""
    repo = Path(__file__).resolve().parents[2]
    example = repo / "examples" / "churn-csv.yaml"
    if not example.is_file():
        pytest.skip("examples/churn-csv.yaml is not in this checkout")
    result = subprocess.run(
        pilotage("train", "-f", str(example), "--output", (tmp_path / "m").as_uri()),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo,
    )
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["phase"] == "Succeeded", summary["message"]
    assert summary["gates"]["passed"] is True


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            {"model": {"algorithm": "random_forest", "hyperparameters": {"n_estimator": 5}}},
            "spec.model.hyperparameters: n_estimator not a parameter",
        ),
        (
            {"evaluation": {"gates": [{"metric": "roc_auc", "min": 0.5}]}},
            "spec.evaluation.gates: roc_auc is not a regression metric",
        ),
        (
            {
                "search": {
                    "parameters": {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 2]},
                    "maxTrials": 4,
                }
            },
            "the grid has 6 combinations, more than maxTrials=4",
        ),
    ],
)
def test_a_spec_error_exits_2_and_says_it_is_not_retryable(
    tmp_path: Path, spec: dict, reason: str
) -> None:
    # diabetes has a float target: the task is inferred as regression.
    tj = job("diabetes", "decision_tree", **spec)
    path = manifests(tmp_path / "m.yaml", dataset("diabetes", "builtin://diabetes"), tj)
    result = run("train", "-f", str(path), "--output", (tmp_path / "out").as_uri())
    assert result.returncode == 2, result.stderr
    summary = last_json(result.stdout)
    assert summary["phase"] == "Failed" and summary["retryable"] is False
    assert reason in summary["message"], summary["message"]
    assert "Traceback" not in result.stderr


def test_profile_reports_target_task_and_column_summary(tmp_path: Path) -> None:
    frame = churn_frame(120)
    frame.loc[[1, 2], "age"] = None
    csv = tmp_path / "d.csv"
    frame.to_csv(csv, index=False)
    path = manifests(tmp_path / "m.yaml", dataset("d", csv.as_uri(), target="churned"))
    result = run("profile", "-f", str(path))
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["target"] == "churned" and summary["task"] == "classification"
    columns = {c["name"]: c for c in summary["summary"]}
    assert summary["summary"][0]["name"] == "churned"
    assert columns["churned"]["role"] == "target" and columns["churned"]["distinct"] == 2
    age = columns["age"]
    assert (
        age["role"] == "feature"
        and age["type"] == "float"
        and age["missing"] == frame["age"].isna().sum() >= 2
    )
    assert age["min"] == frame["age"].min() and age["max"] == frame["age"].max()
    assert columns["country"]["type"] == "category" and "min" not in columns["country"]
    assert columns["country"]["distinct"] == frame["country"].nunique()
    regression = manifests(tmp_path / "r.yaml", dataset("r", "builtin://diabetes"))
    result = run("profile", "-f", str(regression))
    assert last_json(result.stdout)["task"] == "regression"
