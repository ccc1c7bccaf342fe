"""Validated rows: the one shape every protocol decodes into before inference.

Numeric, int and bool features travel as one float32 matrix (NaN = null); categorical
features as one object column each (str, or None for null). Bool values count as 1/0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pilotage.api.modelcard import FeatureInfo, ModelCard
from pilotage.server.errors import bad_request

_NUMBER_TYPES = (int, float)


@dataclass(slots=True)
class Rows:
    count: int
    numeric: np.ndarray  # float32 [count, number of non-categorical features]
    categorical: list[np.ndarray]  # one object array [count] per categorical feature


def concat(parts: list[Rows]) -> Rows:
    if len(parts) == 1:
        return parts[0]
    return Rows(
        count=sum(p.count for p in parts),
        numeric=np.concatenate([p.numeric for p in parts]),
        categorical=[
            np.concatenate([p.categorical[j] for p in parts])
            for j in range(len(parts[0].categorical))
        ],
    )


class RowSchema:
    """The card's features, split into the numeric matrix and the categorical columns."""

    def __init__(self, card: ModelCard) -> None:
        self.features: list[FeatureInfo] = list(card.features)
        self.names = [f.name for f in self.features]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.numeric_features = [f for f in self.features if f.type != "category"]
        self.categorical_features = [f for f in self.features if f.type == "category"]
        # position of each feature inside `numeric` or `categorical`
        self.slot: dict[str, int] = {}
        for j, f in enumerate(self.numeric_features):
            self.slot[f.name] = j
        for j, f in enumerate(self.categorical_features):
            self.slot[f.name] = j
        self.all_numeric = not self.categorical_features
        self.non_nullable_numeric = np.array(
            [not f.nullable for f in self.numeric_features], dtype=bool
        )
        self.any_non_nullable_numeric = bool(self.non_nullable_numeric.any())
        self.expected = ", ".join(self.names)
        # The Dataset schema's rules, as float32 (the values arrive as float32): a value
        # outside them is counted (and refused with strict schema checking).
        numeric = self.numeric_features
        with np.errstate(over="ignore"):
            self.minimum = np.array(
                [-np.inf if f.min is None else f.min for f in numeric], dtype=np.float32
            )
            self.maximum = np.array(
                [np.inf if f.max is None else f.max for f in numeric], dtype=np.float32
            )
        self.integral = np.array([f.type == "int" for f in numeric], dtype=bool)
        self.boolean = np.array([f.type == "bool" for f in numeric], dtype=bool)
        self.has_rules = bool(
            np.isfinite(self.minimum).any()
            or np.isfinite(self.maximum).any()
            or self.integral.any()
            or self.boolean.any()
        )

    # ---- checks shared by every protocol -------------------------------------------

    def check_numeric_nulls(self, numeric: np.ndarray, where: str) -> None:
        """Reject NaN in features that the card marks as not nullable."""
        if not self.any_non_nullable_numeric:
            return
        nan = np.isnan(numeric)
        bad = nan[:, self.non_nullable_numeric]
        if bad.any():
            row, col = np.argwhere(nan & self.non_nullable_numeric)[0]
            name = self.numeric_features[int(col)].name
            raise bad_request(
                f"{where}: row {int(row)}: feature {name!r} is null/NaN but not nullable"
            )

    def check_category_nulls(self, feature: FeatureInfo, values: np.ndarray, where: str) -> None:
        """Reject null and the empty string (which the model reads as null) in a categorical
        feature the card marks as not nullable."""
        if feature.nullable:
            return
        for row, value in enumerate(values):
            if value is None:
                raise bad_request(
                    f"{where}: row {row}: feature {feature.name!r} is null but not nullable"
                )
            if value == "":
                raise bad_request(_empty_category(f"{where}: row {row}", feature.name))

    def out_of_schema(self, numeric: np.ndarray) -> np.ndarray:
        """[rows, numeric features] True where a present value breaks the feature's rule:
        below `min`, above `max`, not a whole number (`int`), not 0/1 (`bool`)."""
        with np.errstate(invalid="ignore"):
            bad = (numeric < self.minimum) | (numeric > self.maximum)
            bad |= self.integral & (np.floor(numeric) != numeric)
            bad |= self.boolean & (numeric != 0) & (numeric != 1)
        flagged: np.ndarray = bad & ~np.isnan(numeric)
        return flagged

    def check_schema(self, rows: Rows, where: str) -> None:
        """Strict mode: refuse the first value outside the Dataset schema, naming it."""
        if not self.has_rules or not rows.count:
            return
        bad = self.out_of_schema(rows.numeric)
        if not bad.any():
            return
        row, col = (int(v) for v in np.argwhere(bad)[0])
        feature = self.numeric_features[col]
        value = float(rows.numeric[row, col])
        if feature.min is not None and value < self.minimum[col]:
            rule = f"below min {feature.min:g}"
        elif feature.max is not None and value > self.maximum[col]:
            rule = f"above max {feature.max:g}"
        else:
            rule = f"not a valid {feature.type}"
        raise bad_request(
            f"{where}: row {row}: feature {feature.name!r} value {value:.9g} is {rule} "
            "(out of the Dataset schema; this server checks it strictly)"
        )

    def check_numeric(self, numeric: np.ndarray, where: str) -> None:
        """One rule for every protocol: no rows is refused, a value is finite or null
        (NaN, only where nullable). ±Inf cannot reach a V1 model (JSON has no infinity,
        orjson refuses 1e999) and must not reach it through V2 binary data either."""
        if numeric.shape[0] == 0:
            raise bad_request(f"{where}: no rows (send at least one row)")
        if numeric.size and np.isinf(numeric).any():
            row, col = np.argwhere(np.isinf(numeric))[0]
            name = self.numeric_features[int(col)].name
            raise bad_request(
                f"{where}: row {int(row)}: feature {name!r} is infinite (send a finite number)"
            )
        self.check_numeric_nulls(numeric, where)

    def empty(self) -> Rows:
        return Rows(
            0,
            np.zeros((0, len(self.numeric_features)), dtype=np.float32),
            [np.empty(0, dtype=object) for _ in self.categorical_features],
        )

    # ---- one value at a time (the precise, slower path) -----------------------------

    def numeric_value(self, feature: FeatureInfo, value: object, where: str) -> float:
        if value is None:
            if not feature.nullable:
                raise bad_request(f"{where}: feature {feature.name!r} is null but not nullable")
            return math.nan
        if isinstance(value, _NUMBER_TYPES):  # bool is an int: counts as 1/0
            try:
                return float(value)
            except OverflowError:
                raise bad_request(
                    f"{where}: feature {feature.name!r} value is out of range"
                ) from None
        raise bad_request(
            f"{where}: feature {feature.name!r} expects a number, got {_json_type(value)}"
        )

    def category_value(self, feature: FeatureInfo, value: object, where: str) -> str | None:
        if value is None:
            if not feature.nullable:
                raise bad_request(f"{where}: feature {feature.name!r} is null but not nullable")
            return None
        if isinstance(value, str):
            if not value and not feature.nullable:
                raise bad_request(_empty_category(where, feature.name))
            return value
        raise bad_request(
            f"{where}: feature {feature.name!r} is categorical and expects a string, "
            f"got {_json_type(value)}"
        )

    def rows_from_lists(self, rows: list[list[object]], where: str) -> Rows:
        """Rows given as lists in feature order, validated value by value."""
        numeric = np.empty((len(rows), len(self.numeric_features)), dtype=np.float32)
        categorical = [np.empty(len(rows), dtype=object) for _ in self.categorical_features]
        for i, row in enumerate(rows):
            at = f"{where} {i}"
            for feature, value in zip(self.features, row, strict=True):
                if feature.type == "category":
                    categorical[self.slot[feature.name]][i] = self.category_value(
                        feature, value, at
                    )
                else:
                    x = self.numeric_value(feature, value, at)
                    if abs(x) > 3.4e38 and not math.isinf(x):
                        raise bad_request(
                            f"{at}: feature {feature.name!r} value {x} does not fit in float32"
                        )
                    numeric[i, self.slot[feature.name]] = x
        return Rows(len(rows), numeric, categorical)


def _empty_category(where: str, name: str) -> str:
    return (
        f"{where}: feature {name!r} is an empty string, which the model reads as null, "
        "but it is not nullable"
    )


def _json_type(value: object) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, bool):
        return "boolean"
    return type(value).__name__
