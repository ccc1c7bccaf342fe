"""Counting observed rows into the model's baseline bins, and a ring of recent rows.

Rows are copied into a fixed pending buffer as they arrive (one small copy per request)
and counted in bulk, one vectorised ``searchsorted`` + ``bincount`` per feature, when
the buffer fills or when someone reads the counts. The bins and their counting are
``pilotage.drift.baseline``'s (the trainer's profiles use the same); the counts are
served as ``pilotage.wire.drift_counts``' document.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from pilotage.api.modelcard import CategoricalProfile, ModelCard, NumericProfile
from pilotage.drift.baseline import CategoryBins, NumericBins
from pilotage.server.engine import Prediction
from pilotage.server.rows import Rows, RowSchema
from pilotage.wire.drift_counts import DriftCounts, Reservoir

PENDING_ROWS = 1024
# The longest category value the reservoir keeps as sent. A longer one that is not a known
# category (it counts as __other__ anyway) is kept as its first characters plus a hash,
# so that distinct values stay distinct but a client cannot fill the reservoir (and the
# /drift answer) with megabytes per row.
MAX_KEPT_CATEGORY = 64
_KEPT_PREFIX = 40


def bounded_category(value: str) -> str:
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{value[:_KEPT_PREFIX]}…#{digest}"


class RecentRows:
    """The last ``capacity`` rows, oldest first when read."""

    def __init__(
        self, schema: RowSchema, capacity: int, known: list[set[str]] | None = None
    ) -> None:
        self.schema = schema
        self.capacity = capacity
        # per categorical feature: the categories kept whatever their length
        self.known = known or [set() for _ in schema.categorical_features]
        self.numeric = np.zeros((capacity, len(schema.numeric_features)), dtype=np.float32)
        self.categorical = [np.empty(capacity, dtype=object) for _ in schema.categorical_features]
        self.written = 0

    def add(self, rows: Rows) -> None:
        if self.capacity == 0:
            return
        n = rows.count
        start = 0
        if n > self.capacity:
            start = n - self.capacity
            self.written += start
            n = self.capacity
        pos = self.written % self.capacity
        first = min(n, self.capacity - pos)
        self.numeric[pos : pos + first] = rows.numeric[start : start + first]
        self.numeric[: n - first] = rows.numeric[start + first : start + n]
        for ring, column, known in zip(self.categorical, rows.categorical, self.known, strict=True):
            kept = column[start : start + n]
            long = [
                i
                for i, v in enumerate(kept)
                if v is not None and len(v) > MAX_KEPT_CATEGORY and v not in known
            ]
            if long:
                kept = kept.copy()
                for i in long:
                    kept[i] = bounded_category(kept[i])
            ring[pos : pos + first] = kept[:first]
            ring[: n - first] = kept[first:n]
        self.written += n

    def rows(self) -> list[list[Any]]:
        held = min(self.written, self.capacity)
        order = [(self.written - held + i) % self.capacity for i in range(held)] if held else []
        out: list[list[Any]] = []
        for i in order:
            row: list[Any] = []
            for feature in self.schema.features:
                slot = self.schema.slot[feature.name]
                if feature.type == "category":
                    row.append(self.categorical[slot][i])
                else:
                    x = self.numeric[i, slot]  # numpy float32: written in its shortest form
                    row.append(None if x != x else x)
            out.append(row)
        return out


class DriftCounter:
    """Cumulative per-feature bin counts, prediction counts and recent rows for one model."""

    def __init__(self, card: ModelCard, schema: RowSchema, reservoir_size: int) -> None:
        self.schema = schema
        profiles = card.baseline.features
        self.numeric_bins = [
            NumericBins(_edges(profiles.get(f.name))) for f in schema.numeric_features
        ]
        self.category_bins = [
            CategoryBins(_categories(profiles.get(f.name), f.categories))
            for f in schema.categorical_features
        ]
        self.is_classifier = card.task == "classification"
        self.class_counts: dict[str, int] = {str(c): 0 for c in card.classes or []}
        prediction_profile = card.baseline.predictions
        self.prediction_bins = NumericBins(
            prediction_profile.edges if isinstance(prediction_profile, NumericProfile) else []
        )
        self.rows_total = 0
        # per numeric feature: values outside the Dataset schema (min, max, int, bool)
        self.out_of_schema = np.zeros(len(schema.numeric_features), dtype=np.int64)
        self.recent = RecentRows(
            schema, reservoir_size, [set(b.categories) for b in self.category_bins]
        )
        self._pending = np.empty((PENDING_ROWS, len(schema.numeric_features)), dtype=np.float32)
        self._pending_rows = 0
        self._pending_predictions = np.empty(PENDING_ROWS, dtype=np.float64)

    def observe(self, rows: Rows, prediction: Prediction) -> None:
        self.rows_total += rows.count
        if self.schema.has_rules and rows.count:
            self.out_of_schema += self.schema.out_of_schema(rows.numeric).sum(axis=0)
        self.recent.add(rows)
        for bins, column in zip(self.category_bins, rows.categorical, strict=True):
            bins.add(column)
        if self.is_classifier:
            counts = self.class_counts
            for label in prediction.labels.tolist():
                key = str(label)
                counts[key] = counts.get(key, 0) + 1
        if rows.count > PENDING_ROWS - self._pending_rows:
            self.flush()
            if rows.count > PENDING_ROWS:
                self._count(rows.numeric, prediction.labels)
                return
        start, stop = self._pending_rows, self._pending_rows + rows.count
        self._pending[start:stop] = rows.numeric
        if not self.is_classifier:
            self._pending_predictions[start:stop] = prediction.labels
        self._pending_rows = stop

    def flush(self) -> None:
        n = self._pending_rows
        if n:
            self._count(self._pending[:n], self._pending_predictions[:n])
            self._pending_rows = 0

    def _count(self, numeric: np.ndarray, predictions: np.ndarray) -> None:
        for j, bins in enumerate(self.numeric_bins):
            bins.add(numeric[:, j])
        if not self.is_classifier:
            self.prediction_bins.add(np.asarray(predictions, dtype=np.float64))

    def feature_counts(self) -> dict[str, dict[str, int]]:
        self.flush()
        out: dict[str, dict[str, int]] = {}
        for f, nb in zip(self.schema.numeric_features, self.numeric_bins, strict=True):
            out[f.name] = nb.labels()
        for f, cb in zip(self.schema.categorical_features, self.category_bins, strict=True):
            out[f.name] = cb.labels()
        return {name: out[name] for name in self.schema.names}

    def prediction_counts(self) -> dict[str, int]:
        self.flush()
        if self.is_classifier:
            return dict(self.class_counts)
        return self.prediction_bins.labels()

    def out_of_schema_counts(self) -> dict[str, int]:
        """Values seen outside the Dataset schema, per numeric feature that has a rule."""
        schema = self.schema
        ruled = (
            np.isfinite(schema.minimum)
            | np.isfinite(schema.maximum)
            | schema.integral
            | schema.boolean
        )
        return {
            f.name: int(n)
            for f, n, has in zip(schema.numeric_features, self.out_of_schema, ruled, strict=True)
            if has
        }

    def snapshot(self, model: str, version: str) -> DriftCounts:
        """The counters as the ``/drift`` document (reservoir numbers stay float32, which
        the JSON encoder writes in their shortest form)."""
        return DriftCounts(
            model=model,
            version=version,
            rows=self.rows_total,
            features=self.feature_counts(),
            out_of_schema=self.out_of_schema_counts(),
            prediction_kind="classes" if self.is_classifier else "bins",
            predictions=self.prediction_counts(),
            reservoir=Reservoir(
                columns=tuple(self.schema.names),
                rows=self.recent.rows(),
                capacity=self.recent.capacity,
            ),
        )


def _edges(profile: NumericProfile | CategoricalProfile | None) -> list[float]:
    return profile.edges if isinstance(profile, NumericProfile) else []


def _categories(
    profile: NumericProfile | CategoricalProfile | None, declared: list[str] | None
) -> list[str]:
    if isinstance(profile, CategoricalProfile):
        return profile.categories
    return list(declared or [])
