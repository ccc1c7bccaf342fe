"""The drift counters document: a model server's ``GET /v1/models/{name}/drift``.

The one definition of it: the server produces it (``pilotage.server.drift``) and the
control plane's shells parse it (``pilotage.control.observe``), both through
``DriftCounts``::

    {"model": "iris", "version": "v1",
     "rows": 300,                                    # rows counted since the process started
     "features": {"petal_length": {"0": 120, "1": 180, "null": 0}},   # feature → bin → count
     "outOfSchema": {"petal_length": 0},            # values outside the Dataset schema
     "predictions": {"kind": "classes", "counts": {"0": 100, "1": 200}},   # or kind "bins"
     "reservoir": {"capacity": 1000, "columns": ["petal_length"], "rows": [[1.4], [5.1]]}}

Counts are cumulative per process; bins follow ``pilotage.drift.baseline``. The
reservoir holds the most recent rows, oldest first: numbers, strings, null.

Parsing is lenient, as a reader of many replicas must be: a malformed entry is dropped or
read as 0 (``DriftCounts.parse``), never an exception. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Cell = float | str | None
"""A reservoir value: a number, a category, or null."""

_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "version", "rows", "features", "predictions", "reservoir"],
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "string"},
        "rows": {"type": "integer", "minimum": 0},
        "features": {"type": "object", "additionalProperties": _COUNTS},
        "outOfSchema": _COUNTS,
        "predictions": {
            "type": "object",
            "required": ["kind", "counts"],
            "properties": {
                "kind": {"type": "string", "enum": ["classes", "bins"]},
                "counts": _COUNTS,
            },
        },
        "reservoir": {
            "type": "object",
            "required": ["capacity", "columns", "rows"],
            "properties": {
                "capacity": {"type": "integer", "minimum": 0},
                "columns": {"type": "array", "items": {"type": "string"}},
                "rows": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {
                            "oneOf": [{"type": "number"}, {"type": "string"}],
                            "nullable": True,
                        },
                    },
                },
            },
        },
    },
}
"""The document's OpenAPI 3 schema (``GET /openapi.json`` of the server)."""


@dataclass(frozen=True)
class Reservoir:
    """A server's most recent rows, oldest first."""

    columns: tuple[str, ...]
    rows: Sequence[Sequence[Cell]]
    capacity: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "columns": list(self.columns), "rows": self.rows}

    @staticmethod
    def parse(doc: Any) -> Reservoir | None:
        """None unless ``columns`` and ``rows`` are lists; rows of the wrong width are dropped,
        values that are neither a number nor a string read as null."""
        if not isinstance(doc, Mapping):
            return None
        columns, rows = doc.get("columns"), doc.get("rows")
        if not isinstance(columns, list) or not isinstance(rows, list):
            return None
        width = len(columns)
        return Reservoir(
            columns=tuple(str(c) for c in columns),
            rows=tuple(
                tuple(_cell(v) for v in row)
                for row in rows
                if isinstance(row, list) and len(row) == width
            ),
            capacity=_int(doc.get("capacity")),
        )


@dataclass(frozen=True)
class DriftCounts:
    """One server process's cumulative drift counters and recent rows."""

    rows: int
    features: Mapping[str, Mapping[str, int]]
    """feature → bin label → count."""
    predictions: Mapping[str, int]
    """class (``prediction_kind`` "classes") or prediction bin ("bins") → count."""
    prediction_kind: str = "classes"
    out_of_schema: Mapping[str, int] = field(default_factory=dict)
    """numeric feature with a Dataset rule → values seen outside it."""
    reservoir: Reservoir | None = None
    model: str = ""
    version: str = ""

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "features": self.features,
            "outOfSchema": self.out_of_schema,
            "predictions": {"kind": self.prediction_kind, "counts": self.predictions},
        }
        if self.reservoir is not None:
            doc["reservoir"] = self.reservoir.to_doc()
        return doc

    @staticmethod
    def parse(doc: Mapping[str, Any]) -> DriftCounts:
        features = doc.get("features")
        predictions = doc.get("predictions")
        if not isinstance(predictions, Mapping):
            predictions = {}
        return DriftCounts(
            rows=_int(doc.get("rows")),
            features={
                str(name): _counts(bins)
                for name, bins in (features.items() if isinstance(features, Mapping) else ())
            },
            predictions=_counts(predictions.get("counts")),
            prediction_kind=str(predictions.get("kind") or "classes"),
            out_of_schema=_counts(doc.get("outOfSchema")),
            reservoir=Reservoir.parse(doc.get("reservoir")),
            model=str(doc.get("model") or ""),
            version=str(doc.get("version") or ""),
        )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _counts(doc: Any) -> dict[str, int]:
    if not isinstance(doc, Mapping):
        return {}
    return {str(label): _int(count) for label, count in doc.items()}


def _cell(value: Any) -> Cell:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
