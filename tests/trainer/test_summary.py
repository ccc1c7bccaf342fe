"""The termination message: at most 4 KiB, always valid JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotage.trainer.summary import MAX_BYTES, fit, report


def _big_train_summary() -> dict:
    return {
        "phase": "Succeeded",
        "modelVersion": "v1",
        "modelUri": "s3://bucket/" + "x" * 300,
        "metrics": {f"metric_{i:03d}": i / 7 for i in range(300)} | {"accuracy": 0.9},
        "gates": {
            "passed": True,
            "results": [
                {"metric": "accuracy", "value": 0.9, "min": 0.5, "max": None, "passed": True}
            ],
        },
        "onnxParity": {"maxAbsDiff": 1e-7, "labelAgreement": 1.0},
        "datasetFingerprint": "f" * 64,
        "message": "é" * 3000,
    }


def test_large_summary_is_trimmed_to_valid_json() -> None:
    text = fit(_big_train_summary())
    assert len(text.encode()) <= MAX_BYTES
    out = json.loads(text)
    assert out["phase"] == "Succeeded" and out["modelUri"].startswith("s3://bucket/")
    # Metrics that gates read survive the trimming.
    assert out["metrics"] == {"accuracy": 0.9}
    assert out["gates"]["passed"] is True


def test_many_findings_are_trimmed() -> None:
    summary = {
        "phase": "Failed",
        "rows": 10,
        "findings": [
            {
                "column": f"c{i}",
                "kind": "missing",
                "count": i,
                "severity": "warning",
                "message": "m" * 50,
            }
            for i in range(200)
        ],
        "message": "data failed validation",
    }
    out = json.loads(fit(summary))
    assert 0 < len(out["findings"]) < 200
    assert out["findings"][0]["column"] == "c0"
    assert len(fit(summary).encode()) <= MAX_BYTES


def test_report_writes_the_termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv("PILOTAGE_TERMINATION_LOG", str(log))
    text = report(_big_train_summary())
    assert log.read_text() == text
    assert len(log.read_bytes()) <= MAX_BYTES


def test_a_profile_summary_too_long_for_the_termination_message_keeps_the_target() -> None:
    from pilotage.trainer.summary import failed_profile, fit

    summary = failed_profile()
    summary.update(
        phase="Ready",
        rows=10,
        columns=300,
        target="y",
        task="regression",
        summary=[{"name": "y", "role": "target", "type": "float", "missing": 0, "distinct": 9}]
        + [
            {
                "name": f"feature_{i}",
                "role": "feature",
                "type": "float",
                "missing": 0,
                "distinct": 5,
            }
            for i in range(300)
        ],
    )
    text = fit(summary)
    assert len(text.encode()) <= 4096
    out = json.loads(text)
    assert out["task"] == "regression" and out["summary"][0]["name"] == "y"
    assert 1 < len(out["summary"]) < 301
