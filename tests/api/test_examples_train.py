"""The quickstart and CSV examples train for real and pass their own gates."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.api.files import ROOT
from tests.support.procs import pilotage


@pytest.mark.parametrize(
    ("example", "job"), [("quickstart.yaml", "iris-v1"), ("churn-csv.yaml", "churn-v1")]
)
def test_example_trains_and_passes_its_gates(example: str, job: str, tmp_path: Path) -> None:
    done = subprocess.run(
        pilotage(
            "train", "-f", f"examples/{example}", "--job", job, "--output", f"file://{tmp_path}"
        ),
        cwd=ROOT,  # the churn example's file:// URI is relative to the repository root
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads(done.stdout.strip().splitlines()[-1])
    assert status["phase"] == "Succeeded"
    assert status["gates"]["passed"] is True
    assert (tmp_path / "model.onnx").is_file()
    assert (tmp_path / "model.json").is_file()
