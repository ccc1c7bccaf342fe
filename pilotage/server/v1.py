"""KServe V1: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""

from __future__ import annotations

from typing import Any

import numpy as np

from pilotage.server.errors import RequestError, bad_request
from pilotage.server.rows import Rows, RowSchema, _json_type


def rows_from_v1(body: Any, schema: RowSchema, max_rows: int | None = None) -> Rows:
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, got {_json_type(body)}")
    if "instances" not in body:
        extra = f" (got keys: {', '.join(sorted(map(str, body)))})" if body else ""
        raise bad_request(f"missing 'instances'{extra}")
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise bad_request("'instances' must be a non-empty array")
    if max_rows is not None and len(instances) > max_rows:
        raise RequestError(
            413,
            f"too many rows: {len(instances)} instances; this server scores at most "
            f"{max_rows} per request (--max-rows); split the request",
        )
    rows = [_as_list(inst, i, schema) for i, inst in enumerate(instances)]
    if schema.all_numeric:
        fast = _numeric_fast_path(rows, len(schema.names))
        if fast is not None:
            return Rows(len(rows), fast, [])
    return schema.rows_from_lists(rows, "instance")


def _as_list(instance: Any, i: int, schema: RowSchema) -> list[Any]:
    n = len(schema.names)
    if type(instance) is list:
        if len(instance) != n:
            raise bad_request(
                f"instance {i} has {len(instance)} values, expected {n} "
                f"(features in order: {schema.expected})"
            )
        return instance
    if isinstance(instance, dict):
        try:
            row = [instance[name] for name in schema.names]
        except KeyError as exc:
            raise bad_request(f"instance {i}: missing feature {exc.args[0]!r}") from None
        if len(instance) != n:
            unknown = sorted(k for k in instance if k not in schema.index)
            raise bad_request(
                f"instance {i}: unknown feature(s) {', '.join(map(repr, unknown))} "
                f"(expected: {schema.expected})"
            )
        return row
    raise bad_request(
        f"instance {i} must be an array in feature order or an object keyed by feature name, "
        f"got {_json_type(instance)}"
    )


def _numeric_fast_path(rows: list[list[Any]], n: int) -> np.ndarray | None:
    """One numpy conversion when every value is a plain number; None sends to the slow path."""
    try:
        raw = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        return None
    if raw.dtype.kind not in "fi" or raw.ndim != 2 or raw.shape[1] != n:
        return None
    with np.errstate(over="ignore"):
        matrix = raw.astype(np.float32)
    if not np.isfinite(matrix).all():
        return None
    return matrix


def v1_response(labels: list[Any], probabilities: np.ndarray | None) -> dict[str, Any]:
    out: dict[str, Any] = {"predictions": labels}
    if probabilities is not None:
        out["probabilities"] = probabilities
    return out
