"""Reading predictions out of V1/V2 answers and comparing them (shadow and feedback).

Only used off the hot path: shadow workers and ``POST /v1/feedback`` parse bodies;
proxied requests never do.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

# V2 output names that carry the prediction (skl2onnx's defaults and pilotage's own).
_PREDICTION_OUTPUTS = ("predictions", "label", "output_label", "prediction", "variable", "predict")


def extract_predictions(body: bytes) -> list[Any] | None:
    """The list of predictions of a V1 or V2 JSON answer, or None if there is none."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    predictions = doc.get("predictions")
    if isinstance(predictions, list):
        return _flatten(predictions)
    outputs = doc.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return None
    named = {
        o["name"]: o for o in outputs if isinstance(o, dict) and isinstance(o.get("name"), str)
    }
    chosen = next((named[n] for n in _PREDICTION_OUTPUTS if n in named), None)
    if chosen is None:
        chosen = next((o for n, o in named.items() if "prob" not in str(n)), None)
    if chosen is None or not isinstance(chosen.get("data"), list):
        return None
    return _flatten(chosen["data"])


def _flatten(values: list[Any]) -> list[Any]:
    """One prediction per row: ``[[3.2], [1.0]]`` (a column) becomes ``[3.2, 1.0]``."""
    if values and all(isinstance(v, list) and len(v) == 1 for v in values):
        return [v[0] for v in values]
    return values


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_regression_value(value: Any) -> bool:
    return isinstance(value, float) and not value.is_integer()


def same_class(a: Any, b: Any) -> bool:
    """Class equality across JSON types: 1 == 1.0 == "1"."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return str(a) == str(b)


def compare(primary: list[Any], shadow: list[Any], tolerance: float) -> tuple[bool, float | None]:
    """(agree, absolute difference summed over rows when numeric and not class-like).

    Floats with a fractional part are regression outputs: they agree within
    ``tolerance``. Anything else (class labels, integers, strings) must be equal.
    """
    if len(primary) != len(shadow):
        return False, None
    agree = True
    diff_sum: float | None = None
    for a, b in zip(primary, shadow, strict=True):
        if _is_number(a) and _is_number(b) and (is_regression_value(a) or is_regression_value(b)):
            diff = abs(float(a) - float(b))
            if math.isnan(diff):
                agree = False
                continue
            diff_sum = (diff_sum or 0.0) + diff
            if diff > tolerance:
                agree = False
        elif not same_class(a, b):
            agree = False
    return agree, diff_sum
