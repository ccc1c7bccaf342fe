"""Encoding answers: JSON bodies, V2 output tensors (JSON or binary), errors."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from pilotage.server.engine import Prediction
from pilotage.server.v2 import LABEL_OUTPUT, PROBABILITIES_OUTPUT, OutputRequest

JSON = orjson.OPT_SERIALIZE_NUMPY
JSON_HEADERS = [(b"content-type", b"application/json")]
CLOSE_JSON_HEADERS = [*JSON_HEADERS, (b"connection", b"close")]
TEXT_HEADERS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=JSON)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def json_labels(labels: np.ndarray) -> Any:
    """Labels as something orjson writes: numeric arrays as they are, strings as a list."""
    return labels.tolist() if labels.dtype == object else labels


def _bytes_tensor(values: np.ndarray) -> bytes:
    parts = []
    for v in values.tolist():
        encoded = str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def v2_outputs(
    prediction: Prediction, label_datatype: str, wanted: OutputRequest
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The ``outputs`` array of a V2 answer and the binary chunks that follow the JSON."""
    n = len(prediction.labels)
    available: dict[str, tuple[str, list[int], np.ndarray]] = {
        LABEL_OUTPUT: (label_datatype, [n], prediction.labels)
    }
    if prediction.probabilities is not None:
        probs = prediction.probabilities
        available[PROBABILITIES_OUTPUT] = ("FP32", list(probs.shape), probs)
    names = wanted.names if wanted.names is not None else list(available)
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name in names:
        if name not in available:
            continue  # probabilities asked of a regressor: nothing to send
        datatype, shape, values = available[name]
        if wanted.binary.get(name, wanted.binary_default):
            if datatype == "BYTES":
                raw = _bytes_tensor(values)
            else:
                raw = np.ascontiguousarray(values).tobytes()
            chunks.append(raw)
            outputs.append(
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
        else:
            data = values.tolist() if datatype == "BYTES" else values.reshape(-1)
            outputs.append({"name": name, "datatype": datatype, "shape": shape, "data": data})
    return outputs, chunks
