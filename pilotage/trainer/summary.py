"""The run's summary: last line of stdout and the pod's termination message (<= 4 KiB)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_ENV = "PILOTAGE_TERMINATION_LOG"
MAX_BYTES = 4096
MESSAGE_LIMIT = 1000


def failed_profile(message: str = "") -> dict[str, Any]:
    """A profile run's summary with every key, as it stands until the run succeeds."""
    return {
        "phase": "Failed",
        "rows": None,
        "columns": None,
        "fingerprint": None,
        "findings": [],
        "profileUri": None,
        "target": None,
        "task": None,
        "summary": [],
        "message": message,
    }


def failed_train(model_version: str | None, message: str = "") -> dict[str, Any]:
    """A training run's summary with every key, as it stands until the run succeeds."""
    return {
        "phase": "Failed",
        "modelVersion": model_version,
        "modelUri": None,
        "metrics": {},
        "gates": None,
        "onnxParity": None,
        "search": None,
        "task": None,
        "datasetFingerprint": None,
        "message": message,
    }


def encode(summary: dict[str, Any]) -> str:
    return json.dumps(summary, separators=(",", ":"), sort_keys=False, allow_nan=False)


def fit(summary: dict[str, Any], limit: int = MAX_BYTES) -> str:
    """The summary as JSON within ``limit`` bytes: trims message, findings, metrics, gates."""
    out = dict(summary)
    out["message"] = str(out.get("message", ""))[:MESSAGE_LIMIT]
    text = encode(out)
    trimmers = ("summary", "findings", "metrics", "gates_results", "message")
    for what in trimmers:
        if len(text.encode()) <= limit:
            break
        if what == "summary" and isinstance(out.get("summary"), list):
            # The target comes first and is kept: the control plane infers the task from it.
            columns = list(out["summary"])
            while len(columns) > 1 and len(encode({**out, "summary": columns}).encode()) > limit:
                columns.pop()
            out["summary"] = columns
        elif what == "findings" and isinstance(out.get("findings"), list):
            findings = list(out["findings"])
            while findings and len(encode({**out, "findings": findings}).encode()) > limit:
                findings.pop()
            out["findings"] = findings
        elif what == "metrics" and isinstance(out.get("metrics"), dict):
            keep = {
                r["metric"]
                for r in (out.get("gates") or {}).get("results", [])
                if isinstance(r, dict)
            }
            out["metrics"] = {k: v for k, v in out["metrics"].items() if k in keep}
        elif what == "gates_results" and isinstance(out.get("gates"), dict):
            out["gates"] = {"passed": out["gates"].get("passed", False), "results": []}
        elif what == "message":
            out["message"] = out["message"][:200]
        text = encode(out)
    if len(text.encode()) > limit:
        keep_keys = (
            "phase",
            "modelVersion",
            "modelUri",
            "datasetFingerprint",
            "fingerprint",
            "rows",
            "columns",
            "task",
            "target",
            "retryable",
        )
        text = encode({k: out[k] for k in keep_keys if k in out} | {"message": "summary trimmed"})
    return text


def termination_log_path() -> Path | None:
    configured = os.environ.get(TERMINATION_ENV)
    if configured:
        return Path(configured)
    if TERMINATION_LOG.exists():
        return TERMINATION_LOG
    return None


def report(summary: dict[str, Any]) -> str:
    """Write the summary to the termination log (when there is one) and return the JSON line."""
    text = fit(summary)
    path = termination_log_path()
    if path is not None:
        # A read-only or missing log must not turn a finished run into a failure.
        with contextlib.suppress(OSError):
            path.write_text(text)
    return text
