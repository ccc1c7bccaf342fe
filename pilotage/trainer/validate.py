"""Checking loaded data against a Dataset's spec: columns, types, nulls, ranges, duplicates.

The result is the typed frame the trainer uses (numeric columns as float64 with NaN for
null, categories as Python strings or None) plus findings with counts. Findings with
severity ``error`` make the data unusable; the caller decides how to report them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pilotage import sources
from pilotage.api.dataset import ColumnSchema, Dataset, Finding
from pilotage.api.modelcard import FeatureType
from pilotage.trainer.errors import DataError

# An object column is read as numeric when at least this share of its values are numbers;
# the others are then reported as type mismatches rather than turning it into a category.
NUMERIC_SHARE = 0.9
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
MAX_SHOWN_NAME = 64
HASH_LIKE_RUN = 20
_HASH_LIKE = re.compile(f"[A-Za-z0-9+/=$.]{{{HASH_LIKE_RUN},}}")


@dataclass(frozen=True)
class Column:
    name: str
    type: FeatureType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None


@dataclass
class ValidatedData:
    frame: pd.DataFrame
    """Features then target, typed; rows with a null target removed."""
    features: list[Column]
    target: Column
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def target_name(dataset: Dataset) -> str:
    if dataset.spec.target:
        return dataset.spec.target
    default = sources.source_for(dataset.spec.source.uri).default_target
    if default:
        return default
    raise DataError(f"Dataset {dataset.name}: spec.target is required for non-builtin sources")


def header_is_shown(names: list[str]) -> bool:
    """Whether the column names read from a file may be repeated in a message.

    A file that is not a table of the declared format (``/etc/shadow``, a credentials file,
    a private key read as CSV) reads as one column named after its first line, which may be
    a password hash or a secret key; status and Events would then carry it to everyone who
    can read the resource. Names are shown only when there are at least two, each at most
    MAX_SHOWN_NAME characters of printable text with no run of HASH_LIKE_RUN or more
    characters of the alphabets hashes, keys and tokens are written in.
    """
    if len(names) < 2:
        return False
    return all(
        len(n) <= MAX_SHOWN_NAME and n.isprintable() and not _HASH_LIKE.search(n) for n in names
    )


def _columns_list(frame: pd.DataFrame | list[str]) -> str:
    names = [str(c) for c in (frame if isinstance(frame, list) else frame.columns)]
    if not header_is_shown(names):
        return (
            f"{len(names)} column{'s' if len(names) != 1 else ''}; names not shown, as the first "
            "line does not read as a header"
        )
    shown = ", ".join(names[:20])
    return shown + (f", … ({len(names)} in all)" if len(names) > 20 else "")


def _infer_type(series: pd.Series) -> FeatureType:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    present = series.dropna()
    if len(present) == 0:
        return "float"
    parsed = pd.to_numeric(present, errors="coerce")
    if parsed.notna().mean() >= NUMERIC_SHARE:
        return "float"
    return "category"


def _as_bool(value: object) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return 1.0
    if word in FALSE_WORDS:
        return 0.0
    return np.nan


def _coerce(series: pd.Series, kind: FeatureType) -> tuple[pd.Series, int, int]:
    """The column in its logical type, how many present values did not fit it, and how
    many of those were infinite (``inf`` parses as a number, but no model can use it)."""
    present = series.notna()
    if kind == "category":
        out = series.astype(object).where(present, None)
        out = out.map(lambda v: None if v is None else _category_text(v))
        return out, 0, 0
    infinite = 0
    if kind == "bool":
        out = series.map(_as_bool).astype(np.float64).where(present, np.nan)
    else:
        out = pd.to_numeric(series, errors="coerce").astype(np.float64)
        unbounded = np.isinf(out)
        infinite = int(unbounded.sum())
        out = out.where(~unbounded, np.nan)
        if kind == "int":
            frac = out.notna() & (np.floor(out) != out)
            out = out.where(~frac, np.nan)
    mismatched = int((present & out.isna()).sum())
    return out, mismatched, infinite


def _category_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


DISTINCT_SHOWN = 1000
"""notAllowed counts distinct values up to this many, then says "more than"."""


@dataclass
class ColumnStats:
    """What the checks of one typed column need, added chunk by chunk (memory stays flat:
    counts, one value, and at most DISTINCT_SHOWN + 1 values outside allowedValues)."""

    rows: int = 0
    nulls: int = 0
    present: int = 0
    low: int = 0
    high: int = 0
    bad: int = 0
    bad_values: set[object] = field(default_factory=set)
    first: object = None
    varied: bool = False
    mismatched: int = 0
    """Values that did not fit the type: NaN in ``values``, reported as typeMismatch, and
    not missing values."""

    def add(self, values: pd.Series, rule: Column, mismatched: int = 0) -> None:
        self.rows += len(values)
        self.mismatched += mismatched
        present = values.dropna()
        self.nulls += len(values) - len(present)
        self.present += len(present)
        if rule.type == "category":
            if rule.allowed is not None:
                outside = present[~present.isin(rule.allowed)]
                self.bad += len(outside)
                for value in outside.unique()[: DISTINCT_SHOWN + 1 - len(self.bad_values)]:
                    self.bad_values.add(value)
        else:
            self.low += int((present < rule.min).sum()) if rule.min is not None else 0
            self.high += int((present > rule.max).sum()) if rule.max is not None else 0
        if not self.varied and len(present):
            if self.first is None:
                self.first = present.iloc[0]
            self.varied = bool((present != self.first).any())

    def findings(self, name: str, rule: Column) -> list[Finding]:
        rows, empty = self.rows, self.nulls
        nulls = empty - self.mismatched
        if empty == rows and self.mismatched:
            return []  # every value mismatched: the typeMismatch error says it all
        if empty == rows:
            return [
                Finding(
                    column=name,
                    kind="allNull",
                    count=rows,
                    severity="error",
                    message=f"column {name} has no values",
                )
            ]
        out: list[Finding] = []
        if nulls:
            out.append(
                Finding(
                    column=name,
                    kind="missing",
                    count=nulls,
                    severity="warning" if rule.nullable else "error",
                    message=f"{nulls} of {rows} values missing"
                    + ("" if rule.nullable else " in a column declared nullable: false"),
                )
            )
        if self.bad:
            # The values themselves are never repeated: they are data, and a schema with
            # an empty allowedValues would otherwise read a column out.
            distinct = len(self.bad_values)
            shown = f"more than {DISTINCT_SHOWN}" if distinct > DISTINCT_SHOWN else str(distinct)
            out.append(
                Finding(
                    column=name,
                    kind="notAllowed",
                    count=self.bad,
                    severity="error",
                    message=f"{self.bad} values outside allowedValues ({shown} distinct)",
                )
            )
        if self.low or self.high:
            out.append(
                Finding(
                    column=name,
                    kind="outOfRange",
                    count=self.low + self.high,
                    severity="error",
                    message=", ".join(
                        part
                        for part in (
                            f"{self.low} below min {rule.min:g}" if self.low else "",
                            f"{self.high} above max {rule.max:g}" if self.high else "",
                        )
                        if part
                    ),
                )
            )
        if not self.varied and rows > 1:
            out.append(
                Finding(
                    column=name,
                    kind="constant",
                    count=self.present,
                    severity="warning",
                    message=f"column {name} has a single value",
                )
            )
        return out


def _check_column(
    name: str,
    values: pd.Series,
    rule: Column,
    rows: int,
    findings: list[Finding],
    mismatched: int = 0,
) -> None:
    """Findings of one typed column (``rows`` long; see ColumnStats)."""
    stats = ColumnStats()
    stats.add(values, rule, mismatched)
    findings.extend(stats.findings(name, rule))


def _rule(name: str, series: pd.Series, schema: dict[str, ColumnSchema]) -> Column:
    return rule_of(name, schema, lambda: _infer_type(series))


def rule_of(
    name: str, schema: dict[str, ColumnSchema], inferred: Callable[[], FeatureType]
) -> Column:
    """The column's rule: the schema's declaration, else the inferred type."""
    declared = schema.get(name)
    if declared is None:
        return Column(name, inferred())
    return Column(
        name,
        declared.type,
        declared.nullable,
        declared.min,
        declared.max,
        tuple(declared.allowed_values) if declared.allowed_values is not None else None,
    )


@dataclass(frozen=True)
class Plan:
    """Which columns a Dataset uses, decided from the header alone."""

    target: str
    features: list[str]
    schema: dict[str, ColumnSchema]

    @property
    def checked(self) -> list[str]:
        """Features, target, then columns only the schema names, in that order."""
        used = {*self.features, self.target}
        return [*self.features, self.target, *(n for n in self.schema if n not in used)]


def plan(dataset: Dataset, names: list[str]) -> Plan:
    """Check the header against the spec; raise DataError naming what does not fit."""
    spec = dataset.spec
    columns = pd.Index(names)
    if columns.duplicated().any():
        dup = sorted(set(columns[columns.duplicated()]))
        named = f": {', '.join(dup)}" if header_is_shown(names) else ""
        raise DataError(f"the data has duplicate column names{named}")
    target = target_name(dataset)
    if target not in names:
        raise DataError(
            f"target column {target!r} is not in the data (columns: {_columns_list(names)})"
        )
    if spec.features is not None:
        unknown = [f for f in spec.features if f not in names]
        if unknown:
            raise DataError(
                f"spec.features names column(s) the data lacks: {', '.join(unknown)} "
                f"(columns: {_columns_list(names)})"
            )
        if target in spec.features:
            raise DataError(f"the target column {target!r} is also listed in spec.features")
        feature_names = list(spec.features)
    else:
        feature_names = [c for c in names if c != target]
    if not feature_names:
        raise DataError("the data has no feature columns besides the target")
    schema = {c.name: c for c in spec.schema_ or []}
    unknown_schema = [n for n in schema if n not in names]
    if unknown_schema:
        raise DataError(
            f"spec.schema names column(s) the data lacks: {', '.join(unknown_schema)} "
            f"(columns: {_columns_list(names)})"
        )
    return Plan(target, feature_names, schema)


def duplicates_finding(duplicates: int, rows: int, max_fraction: float) -> Finding:
    share = duplicates / rows
    too_many = share > max_fraction
    return Finding(
        kind="duplicates",
        count=duplicates,
        severity="error" if too_many else "warning",
        message=f"{duplicates} rows repeat an earlier row ({share:.1%})"
        + (f", more than maxDuplicateFraction {max_fraction}" if too_many else ""),
    )


def mismatch_finding(name: str, kind: FeatureType, mismatched: int, infinite: int) -> Finding:
    return Finding(
        column=name,
        kind="typeMismatch",
        count=mismatched,
        severity="error",
        message=f"{mismatched} values are not of type {kind}"
        + (f" ({infinite} infinite)" if infinite else ""),
    )


def validate(dataset: Dataset, raw: pd.DataFrame) -> ValidatedData:
    """Type and check the data; raise DataError when columns the spec names are absent."""
    spec = dataset.spec
    raw = raw.copy()
    raw.columns = [str(c) for c in raw.columns]
    if raw.shape[0] == 0 and not raw.columns.duplicated().any():
        raise DataError("the data has no rows")
    planned = plan(dataset, list(raw.columns))
    target, feature_names, schema = planned.target, planned.features, planned.schema

    rows = int(raw.shape[0])
    findings: list[Finding] = []
    typed: dict[str, pd.Series] = {}
    rules: dict[str, Column] = {}
    checked = planned.checked
    for name in checked:
        rule = _rule(name, raw[name], schema)
        values, mismatched, infinite = _coerce(raw[name], rule.type)
        if mismatched:
            findings.append(mismatch_finding(name, rule.type, mismatched, infinite))
        _check_column(name, values, rule, rows, findings, mismatched)
        typed[name] = values
        rules[name] = rule

    frame = pd.DataFrame({name: typed[name] for name in [*feature_names, target]})
    duplicates = int(frame.duplicated().sum())
    if duplicates:
        findings.append(duplicates_finding(duplicates, rows, spec.max_duplicate_fraction))
    frame = frame[frame[target].notna()].reset_index(drop=True)
    return ValidatedData(frame, [rules[n] for n in feature_names], rules[target], findings)


def describe_errors(errors: list[Finding]) -> str:
    """One line naming every error finding."""
    parts = []
    for f in errors:
        where = f"column {f.column}: " if f.column else ""
        parts.append(f"{where}{f.kind} ({f.count}) {f.message}".strip())
    return "data failed validation: " + "; ".join(parts)
