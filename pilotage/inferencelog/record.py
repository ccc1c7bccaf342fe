"""Records: what the hot path hands over (``Exchange``) and the JSON object written for it.

The proxy captures an ``Exchange`` — raw bytes and a few scalars, no parsing — and the
writer thread turns it into a record here, off the client's path. Record format
(schema 1, one JSON object per line; see docs/inference-logging.md)::

    {"kind": "request", "schema": 1, "id": "9f2c...", "time": "2026-12-03T14:05:09.123456Z",
     "namespace": "default", "deployment": "iris", "variant": "stable", "version": "1",
     "model": "iris", "protocol": "v1", "shadow": false,
     "features": [{"sepal_length": 5.1, ...}],          # one object per input row
     "predictions": [0], "probabilities": [[0.98, 0.02, 0.0]],   # or null
     "latencyMs": 1.9, "status": 200, "error": null}

    {"kind": "label", "schema": 1, "id": "9f2c...", "time": "...", "namespace": "default",
     "deployment": "iris", "label": "setosa"}               # or "value": 3.2 (regression)

Redacted feature names never reach a record: not as keys, and not inside an error text
(replaced by ``[redacted]``). Rows the writer cannot name (positional rows whose model
metadata could not be read, binary tensors, a body that is not JSON) are written as
``"features": null`` with the reason in ``"featuresNote"`` rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

SCHEMA = 1
REQUEST = "request"
LABEL = "label"
REDACTED = "[redacted]"

# (upstream base URL, model name, version) -> feature names in input order, or None
FeatureNames = Callable[[str, str, str], list[str] | None]


class Exchange(NamedTuple):
    """One answered (or failed) request as the proxy saw it: raw, unparsed."""

    time: float  # wall clock, seconds since the epoch
    request_id: bytes
    variant: str
    version: str
    upstream: str  # base URL of the variant that answered
    path: str
    body: bytes
    status: int
    answer: bytes | None
    latency: float  # seconds
    error: str | None
    shadow: bool


class Label(NamedTuple):
    """One ground-truth item of ``POST /v1/feedback``."""

    time: float
    request_id: str
    kind: str  # "label" or "value"
    truth: Any


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def iso_time(t: float) -> str:
    """``2026-12-03T14:05:09.123456Z``; the date part is formatted once per second."""
    whole = int(t)
    if whole != _second[0]:
        _second[0] = whole
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{min(int((t - whole) * 1e6), 999_999):06d}Z"


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def model_of(path: str) -> tuple[str, str] | None:
    """(protocol, model name) of an inference path, or None."""
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "v1" and parts[1] == "models" and ":" in parts[2]:
        return "v1", parts[2].rsplit(":", 1)[0]
    if len(parts) >= 4 and parts[0] == "v2" and parts[1] == "models" and parts[-1] == "infer":
        return "v2", parts[2]
    return None


def scrub(text: str | None, redact: frozenset[str]) -> str | None:
    if text is None or not redact:
        return text
    for name in redact:
        text = text.replace(name, REDACTED)
    return text


def _named(row: Any, names: list[str] | None, redact: frozenset[str]) -> dict[str, Any] | None:
    if type(row) is dict:
        named = row  # parsed from the body just now: ours to change
    elif type(row) is list and names is not None and len(row) == len(names):
        named = dict(zip(names, row, strict=True))
    else:
        return None
    for name in redact:
        named.pop(name, None)
    return named


def _reshape(data: Any, shape: Any) -> list[Any] | None:
    """Rows of a V2 tensor: ``data`` flat or nested, ``shape`` [N] or [N, ...]."""
    if not isinstance(data, list):
        return None
    if data and isinstance(data[0], list):
        return data
    if not isinstance(shape, list) or not shape:
        return data
    if len(shape) == 1:
        return data
    width = 1
    for s in shape[1:]:
        if not isinstance(s, int) or s < 1:
            return None
        width *= s
    if width == 1:
        return data
    return [data[i : i + width] for i in range(0, len(data), width)]


def features_of(
    protocol: str, body: bytes, names: Callable[[], list[str] | None], redact: frozenset[str]
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """(rows as named features, or None and why)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, "request body is not JSON (binary tensors are not logged)"
    if not isinstance(doc, dict):
        return None, "request body is not a JSON object"
    if protocol == "v1":
        rows = doc.get("instances")
        if not isinstance(rows, list):
            return None, "request has no instances"
        known: list[str] | None = None
        out: list[dict[str, Any]] = []
        for r in rows:
            if known is None and type(r) is not dict:
                known = names()
            named = _named(r, known, redact)
            if named is None:
                return None, "feature names unknown for positional rows"
            out.append(named)
        return out, None
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return None, "request has no inputs"
    tensors = [t for t in inputs if isinstance(t, dict)]
    if any(
        isinstance(t.get("parameters"), dict) and "binary_data_size" in t["parameters"]
        for t in tensors
    ):
        return None, "binary tensors are not logged"
    known = names()
    if len(tensors) == 1 and (known is None or tensors[0].get("name") not in known):
        rows = _reshape(tensors[0].get("data"), tensors[0].get("shape"))
        if rows is None:
            return None, "input tensor unreadable"
        matrix = [_named(r, known, redact) for r in rows]
        named_rows = [r for r in matrix if r is not None]
        if len(named_rows) != len(matrix):
            return None, "feature names unknown for a matrix input"
        return named_rows, None
    columns: dict[str, list[Any]] = {}
    for t in tensors:
        name = t.get("name")
        col = _reshape(t.get("data"), t.get("shape"))
        if not isinstance(name, str) or col is None:
            return None, "input tensor unreadable"
        columns[name] = [c[0] if isinstance(c, list) and len(c) == 1 else c for c in col]
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        return None, "input tensors of different lengths"
    kept = [n for n in columns if n not in redact]
    return [{n: columns[n][i] for n in kept} for i in range(lengths.pop())], None


def _column(values: list[Any]) -> list[Any]:
    for v in values:
        if type(v) is not list or len(v) != 1:
            return values
    return [v[0] for v in values]


def predictions_of(answer: bytes | None) -> tuple[list[Any] | None, list[Any] | None]:
    """(predictions, probabilities) of a V1 or V2 JSON answer; None where absent."""
    if not answer:
        return None, None
    try:
        doc = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    predictions = doc.get("predictions")
    if isinstance(predictions, list):
        probabilities = doc.get("probabilities")
        return _column(predictions), probabilities if isinstance(probabilities, list) else None
    outputs = doc.get("outputs")
    if not isinstance(outputs, list):
        return None, None
    named = {o.get("name"): o for o in outputs if isinstance(o, dict)}
    label = next(
        (named[n] for n in ("label", "predictions", "output_label", "variable") if n in named),
        None,
    )
    probs = named.get("probabilities") or named.get("output_probability")
    labels = _reshape(label.get("data"), label.get("shape")) if label else None
    prob_rows = _reshape(probs.get("data"), probs.get("shape")) if probs else None
    return (_column(labels) if labels is not None else None), prob_rows


def _error_of(status: int, answer: bytes | None, error: str | None) -> str | None:
    if error is not None or status < 400:
        return error
    if answer:
        try:
            doc = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return answer[:512].decode("utf-8", "replace")
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return str(doc["error"])[:2048]
    return f"status {status}"


_models: dict[str, tuple[str, str]] = {}


def request_record(
    ex: Exchange,
    namespace: str,
    deployment: str,
    names: FeatureNames,
    redact: frozenset[str],
) -> dict[str, Any]:
    found = _models.get(ex.path)
    if found is None:
        found = model_of(ex.path) or ("", "")
        if len(_models) < 1024:
            _models[ex.path] = found
    protocol, model = found

    def lookup() -> list[str] | None:
        return names(ex.upstream, model, ex.version) if model else None

    features, note = (
        features_of(protocol, ex.body, lookup, redact) if model else (None, "not an inference path")
    )
    ok = ex.status < 400
    predictions, probabilities = predictions_of(ex.answer) if ok else (None, None)
    record: dict[str, Any] = {
        "kind": REQUEST,
        "schema": SCHEMA,
        "id": ex.request_id.decode("latin-1"),
        "time": iso_time(ex.time),
        "namespace": namespace,
        "deployment": deployment,
        "variant": ex.variant,
        "version": ex.version,
        "model": model,
        "protocol": protocol,
        "shadow": ex.shadow,
        "features": features,
        "predictions": predictions,
        "probabilities": probabilities,
        "latencyMs": round(ex.latency * 1000.0, 3),
        "status": ex.status,
        "error": scrub(_error_of(ex.status, ex.answer, ex.error), redact),
    }
    if note is not None:
        record["featuresNote"] = note
    return record


def label_record(label: Label, namespace: str, deployment: str) -> dict[str, Any]:
    return {
        "kind": LABEL,
        "schema": SCHEMA,
        "id": label.request_id,
        "time": iso_time(label.time),
        "namespace": namespace,
        "deployment": deployment,
        label.kind: label.truth,
    }


def encode(records: Iterable[dict[str, Any]]) -> bytes:
    """JSON Lines: one record a line, each ending in a newline (NaN and infinities are
    written as null, which orjson does by itself)."""
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
