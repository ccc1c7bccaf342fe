"""Open Inference Protocol (KServe V2) tensors, JSON and the binary tensor extension.

A request carries either one numeric tensor ``[N, F]`` (any name that is not a feature
name) with the features in card order, or one tensor per feature named after it with
shape ``[N]`` or ``[N, 1]`` (BYTES for categorical features). Binary data follows the
JSON header when the ``Inference-Header-Content-Length`` header is present.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from pilotage.server.errors import RequestError, bad_request
from pilotage.server.rows import Rows, RowSchema, _json_type

NUMERIC_DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*NUMERIC_DATATYPES, "BYTES")
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"


@dataclass(slots=True)
class Tensor:
    name: str
    shape: list[int]
    datatype: str
    values: np.ndarray  # flat: numeric dtype, or object array of str for BYTES


@dataclass(slots=True)
class OutputRequest:
    """Which outputs the client wants, and which of them as binary data."""

    names: list[str] | None  # None: all
    binary: dict[str, bool]
    binary_default: bool


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes | None]:
    """Split a request body into its JSON header and the binary data after it, if any."""
    if header_length is None:
        return body, None
    try:
        length = int(header_length)
    except ValueError:
        raise bad_request(
            f"malformed binary header: Inference-Header-Content-Length {header_length!r} "
            "is not an integer"
        ) from None
    if length < 0 or length > len(body):
        raise bad_request(
            f"malformed binary header: Inference-Header-Content-Length {length} but the body "
            f"has {len(body)} bytes"
        )
    return body[:length], body[length:]


def parse_request(
    body: Any,
    binary: bytes | None,
    schema: RowSchema | None = None,
    max_rows: int | None = None,
) -> tuple[list[Tensor], OutputRequest, Any]:
    """Validate the V2 request object; return its tensors, the output request and its id.

    With a ``schema``, each tensor's name, datatype and shape are checked against the
    model (and its rows against ``max_rows``) before its data is decoded: a wrong
    datatype or an oversized tensor costs nothing to refuse."""
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, got {_json_type(body)}")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request("'inputs' must be a non-empty array of tensors")
    names: list[str] = []  # every input's name, known before any data is decoded
    for spec in inputs:
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            if spec["name"] in names:
                raise bad_request(f"input {spec['name']!r} appears more than once")
            names.append(spec["name"])
    offset = 0
    tensors: list[Tensor] = []
    seen: set[str] = set()
    for i, spec in enumerate(inputs):
        tensor, offset = _parse_tensor(spec, i, binary, offset, schema, max_rows, names)
        if tensor.name in seen:
            raise bad_request(f"input {tensor.name!r} appears more than once")
        seen.add(tensor.name)
        tensors.append(tensor)
    if binary is not None and offset != len(binary):
        raise bad_request(
            f"malformed binary data: inputs declare {offset} bytes of binary data but the "
            f"body carries {len(binary)}"
        )
    return tensors, _parse_outputs(body), body.get("id")


def precheck_header(doc: Any, schema: RowSchema, max_rows: int) -> None:
    """The JSON header of a binary request, checked against the model before the binary
    data after it is even received: a wrong datatype or an oversized tensor is refused
    without reading megabytes. Anything else is left to ``parse_request``."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list):
        return
    names = [s["name"] for s in inputs if isinstance(s, dict) and isinstance(s.get("name"), str)]
    if len(names) != len(inputs) or len(set(names)) != len(names):
        return
    for spec in inputs:
        shape, datatype = spec.get("shape"), spec.get("datatype")
        if (
            isinstance(shape, list)
            and shape
            and all(type(d) is int and d >= 0 for d in shape)
            and datatype in DATATYPES
        ):
            _check_against_model(spec["name"], datatype, shape, schema, max_rows, names)


def _check_against_model(
    name: str,
    datatype: str,
    shape: list[int],
    schema: RowSchema,
    max_rows: int | None,
    names: list[str],
) -> None:
    """The checks rows_from_tensors makes, made before any data is decoded."""
    if name in schema.index:
        feature = schema.features[schema.index[name]]
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise bad_request(
                f"input {name!r}: a feature tensor must have shape [N] or [N, 1], got {shape}"
            )
        if feature.type == "category" and datatype != "BYTES":
            raise bad_request(f"input {name!r}: feature is categorical; send BYTES, not {datatype}")
        if feature.type != "category" and datatype == "BYTES":
            raise bad_request(f"input {name!r}: feature is numeric; send FP32, not BYTES")
    elif len(names) == 1:
        n = len(schema.names)
        if not schema.all_numeric:
            raise bad_request(
                f"unknown input {name!r}: this model has categorical features, "
                f"send one tensor per feature ({schema.expected})"
            )
        if len(shape) != 2 or shape[1] != n:
            raise bad_request(
                f"input {name!r} must have shape [N, {n}] (features: {schema.expected}), got {shape}"
            )
        if datatype == "BYTES":
            raise bad_request(f"input {name!r}: features are numeric; send FP32, not BYTES")
    else:
        unknown = [n for n in names if n not in schema.index]
        raise bad_request(
            f"unknown input(s) {', '.join(map(repr, unknown))}: send one [N, "
            f"{len(schema.names)}] tensor or one tensor per feature ({schema.expected})"
        )
    if max_rows is not None and shape[0] > max_rows:
        raise RequestError(
            413,
            f"too many rows: input {name!r} has {shape[0]} rows; this server scores at most "
            f"{max_rows} per request (--max-rows); split the request",
        )


def _parse_tensor(
    spec: Any,
    i: int,
    binary: bytes | None,
    offset: int,
    schema: RowSchema | None = None,
    max_rows: int | None = None,
    names: list[str] | None = None,
) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise bad_request(f"inputs[{i}] must be an object, got {_json_type(spec)}")
    name = spec.get("name")
    if not isinstance(name, str):
        raise bad_request(f"inputs[{i}] needs a string 'name'")
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise bad_request(f"input {name!r}: 'shape' must be a non-empty array of integers >= 0")
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise bad_request(
            f"input {name!r}: unknown datatype {datatype!r} (use one of {', '.join(DATATYPES)})"
        )
    if schema is not None:
        _check_against_model(name, datatype, shape, schema, max_rows, names or [name])
    size = math.prod(shape)
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request(f"input {name!r}: 'parameters' must be an object")
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        if binary is None:
            raise bad_request(
                f"input {name!r} declares binary_data_size but the request has no "
                "Inference-Header-Content-Length header"
            )
        if type(binary_size) is not int or binary_size < 0:
            raise bad_request(f"input {name!r}: binary_data_size must be an integer >= 0")
        if offset + binary_size > len(binary):
            raise bad_request(
                f"malformed binary data: input {name!r} needs {binary_size} bytes at offset "
                f"{offset}, the body has {len(binary)} after the JSON header"
            )
        raw = binary[offset : offset + binary_size]
        values = _decode_binary(name, datatype, raw, size)
        return Tensor(name, shape, datatype, values), offset + binary_size
    if "data" not in spec:
        raise bad_request(f"input {name!r} has no 'data' and no binary_data_size")
    return Tensor(name, shape, datatype, _decode_json(name, datatype, spec["data"], size)), offset


def _decode_binary(name: str, datatype: str, raw: bytes, size: int) -> np.ndarray:
    if datatype == "BYTES":
        items: list[str] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise bad_request(f"malformed binary data for {name!r}: truncated length prefix")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise bad_request(f"malformed binary data for {name!r}: truncated element")
            try:
                items.append(raw[pos : pos + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise bad_request(f"input {name!r}: element is not valid UTF-8") from None
            pos += length
            if len(items) > size:  # stop decoding as soon as it cannot fit the shape
                raise bad_request(
                    f"input {name!r}: binary data holds more than {size} elements, "
                    f"shape needs {size}"
                )
        values = np.empty(len(items), dtype=object)
        values[:] = items
    else:
        dtype = NUMERIC_DATATYPES[datatype]
        if len(raw) % dtype.itemsize:
            raise bad_request(
                f"malformed binary data for {name!r}: {len(raw)} bytes is not a multiple of "
                f"{dtype.itemsize} ({datatype})"
            )
        values = np.frombuffer(raw, dtype=dtype)
    if values.size != size:
        raise bad_request(
            f"input {name!r}: binary data holds {values.size} elements, shape needs {size}"
        )
    return values


def _decode_json(name: str, datatype: str, data: Any, size: int) -> np.ndarray:
    if not isinstance(data, list):
        raise bad_request(f"input {name!r}: 'data' must be an array, got {_json_type(data)}")
    if datatype == "BYTES":
        strings = _flatten_strings(name, data)
        if len(strings) != size:
            raise bad_request(
                f"input {name!r}: 'data' holds {len(strings)} elements, shape needs {size}"
            )
        values = np.empty(size, dtype=object)
        values[:] = strings
        return values
    try:
        raw = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise bad_request(
            f"input {name!r}: 'data' must be a flat or regularly nested array of scalars"
        ) from None
    flat = raw.ravel()
    if flat.size != size:
        raise bad_request(f"input {name!r}: 'data' holds {flat.size} elements, shape needs {size}")
    if flat.size and flat.dtype.kind == "O" and datatype != "BOOL":
        flat = _with_nulls(name, datatype, flat)
    if flat.size and flat.dtype.kind not in "biuf":
        raise bad_request(
            f"input {name!r}: {datatype} data must be numbers (null for a missing value)"
        )
    if datatype == "BOOL" and flat.size and flat.dtype.kind != "b":
        raise bad_request(f"input {name!r}: BOOL data must be true/false")
    return flat


def _with_nulls(name: str, datatype: str, flat: np.ndarray) -> np.ndarray:
    """Numbers with JSON nulls as NaN (a missing value, as in V1; the schema refuses it
    where a feature is not nullable); anything else is left for the caller to refuse."""
    if not any(v is None for v in flat):
        return flat
    if not all(v is None or isinstance(v, int | float) for v in flat):
        return flat
    try:
        return np.array([math.nan if v is None else float(v) for v in flat], dtype=np.float64)
    except OverflowError:
        raise bad_request(f"input {name!r}: a value does not fit in {datatype}") from None


def _flatten_strings(name: str, data: list[Any]) -> list[str | None]:
    out: list[str | None] = []
    stack: list[Any] = [iter(data)]  # iterative: a deeply nested body must not recurse
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, str) or item is None:
            out.append(item)  # null: a missing category, refused where not nullable
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            raise bad_request(f"input {name!r}: BYTES data must be strings, got {_json_type(item)}")
    return out


_END = object()


def _parse_outputs(body: dict[str, Any]) -> OutputRequest:
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request("'parameters' must be an object")
    binary_default = parameters.get("binary_data_output") is True
    outputs = body.get("outputs")
    if outputs is None:
        return OutputRequest(None, {}, binary_default)
    if not isinstance(outputs, list):
        raise bad_request("'outputs' must be an array")
    names: list[str] = []
    binary: dict[str, bool] = {}
    for i, spec in enumerate(outputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad_request(f"outputs[{i}] must be an object with a string 'name'")
        name = spec["name"]
        if name not in (LABEL_OUTPUT, PROBABILITIES_OUTPUT):
            raise bad_request(
                f"unknown output {name!r} (this server answers {LABEL_OUTPUT!r} and, "
                f"for classifiers, {PROBABILITIES_OUTPUT!r})"
            )
        names.append(name)
        out_params = spec.get("parameters") or {}
        if isinstance(out_params, dict) and "binary_data" in out_params:
            binary[name] = out_params["binary_data"] is True
    return OutputRequest(names, binary, binary_default)


def rows_from_tensors(tensors: list[Tensor], schema: RowSchema) -> Rows:
    by_feature = [t for t in tensors if t.name in schema.index]
    if len(tensors) == 1 and not by_feature:
        return _rows_from_matrix(tensors[0], schema)
    unknown = [t.name for t in tensors if t.name not in schema.index]
    if unknown:
        raise bad_request(
            f"unknown input(s) {', '.join(map(repr, unknown))}: send one [N, "
            f"{len(schema.names)}] tensor or one tensor per feature ({schema.expected})"
        )
    missing = [n for n in schema.names if n not in {t.name for t in tensors}]
    if missing:
        raise bad_request(f"missing feature input(s): {', '.join(map(repr, missing))}")
    count = _rows_of(tensors[0])
    numeric = np.empty((count, len(schema.numeric_features)), dtype=np.float32)
    categorical: list[np.ndarray] = [np.empty(0, dtype=object)] * len(schema.categorical_features)
    for t in tensors:
        if _rows_of(t) != count:
            raise bad_request(
                f"input {t.name!r} has {_rows_of(t)} rows but {tensors[0].name!r} has {count}"
            )
        feature = schema.features[schema.index[t.name]]
        slot = schema.slot[t.name]
        if feature.type == "category":
            if t.datatype != "BYTES":
                raise bad_request(
                    f"input {t.name!r}: feature is categorical; send BYTES, not {t.datatype}"
                )
            schema.check_category_nulls(feature, t.values, f"input {t.name!r}")
            categorical[slot] = t.values
        else:
            if t.datatype == "BYTES":
                raise bad_request(f"input {t.name!r}: feature is numeric; send FP32, not BYTES")
            numeric[:, slot] = _to_float32(t)
    if count == 0:
        raise bad_request(f"input {tensors[0].name!r}: shape {tensors[0].shape} has no rows")
    schema.check_numeric(numeric, "inputs")
    return Rows(count, numeric, categorical)


def _rows_of(t: Tensor) -> int:
    if len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1):
        return t.shape[0]
    raise bad_request(
        f"input {t.name!r}: a feature tensor must have shape [N] or [N, 1], got {t.shape}"
    )


def _rows_from_matrix(t: Tensor, schema: RowSchema) -> Rows:
    n = len(schema.names)
    if not schema.all_numeric:
        raise bad_request(
            f"unknown input {t.name!r}: this model has categorical features, "
            f"send one tensor per feature ({schema.expected})"
        )
    if len(t.shape) != 2 or t.shape[1] != n:
        raise bad_request(
            f"input {t.name!r} must have shape [N, {n}] (features: {schema.expected}), got {t.shape}"
        )
    if t.datatype == "BYTES":
        raise bad_request(f"input {t.name!r}: features are numeric; send FP32, not BYTES")
    matrix = _to_float32(t).reshape(t.shape[0], n)
    schema.check_numeric(matrix, f"input {t.name!r}")
    return Rows(t.shape[0], matrix, [])


def _to_float32(t: Tensor) -> np.ndarray:
    values = t.values
    if values.dtype == np.float32:
        return values
    with np.errstate(over="ignore", invalid="ignore"):
        converted = values.astype(np.float32)
    if values.dtype.kind == "f" and np.isinf(converted).any() and not np.isinf(values).any():
        raise bad_request(f"input {t.name!r}: a value does not fit in float32")
    return converted
