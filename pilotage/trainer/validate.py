"""Checking loaded data against a Dataset's spec: columns, types, nulls, ranges, duplicates.

The result is the typed frame the trainer uses (numeric columns as float64 with NaN for
null, categories as Python strings or None) plus findings with counts. Findings with
severity ``error`` make the data unusable; the caller decides how to report them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pilotage.api.dataset import ColumnSchema, Dataset, Finding
from pilotage.api.modelcard import FeatureType
from pilotage.trainer.data import BUILTIN_TARGET
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
    if dataset.spec.source.uri.startswith("builtin://"):
        return BUILTIN_TARGET
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


def _columns_list(frame: pd.DataFrame) -> str:
    names = [str(c) for c in frame.columns]
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


def _check_column(
    name: str,
    values: pd.Series,
    rule: Column,
    rows: int,
    findings: list[Finding],
    mismatched: int = 0,
) -> None:
    """Findings of one typed column. ``mismatched`` values did not fit the type (they are
    NaN in ``values``, already reported as typeMismatch): they are not missing values."""
    empty = int(values.isna().sum())
    nulls = empty - mismatched
    if empty == rows and mismatched:
        return  # every value mismatched: the typeMismatch error says it all
    if empty == rows:
        findings.append(
            Finding(
                column=name,
                kind="allNull",
                count=rows,
                severity="error",
                message=f"column {name} has no values",
            )
        )
        return
    if nulls:
        findings.append(
            Finding(
                column=name,
                kind="missing",
                count=nulls,
                severity="warning" if rule.nullable else "error",
                message=f"{nulls} of {rows} values missing"
                + ("" if rule.nullable else " in a column declared nullable: false"),
            )
        )
    present = values.dropna()
    if rule.type == "category":
        if rule.allowed is not None:
            bad = int((~present.isin(rule.allowed)).sum())
            if bad:
                # The values themselves are never repeated: they are data, and a schema
                # with an empty allowedValues would otherwise read a column out.
                distinct = int(present[~present.isin(rule.allowed)].nunique())
                findings.append(
                    Finding(
                        column=name,
                        kind="notAllowed",
                        count=bad,
                        severity="error",
                        message=f"{bad} values outside allowedValues ({distinct} distinct)",
                    )
                )
    else:
        low = int((present < rule.min).sum()) if rule.min is not None else 0
        high = int((present > rule.max).sum()) if rule.max is not None else 0
        if low or high:
            findings.append(
                Finding(
                    column=name,
                    kind="outOfRange",
                    count=low + high,
                    severity="error",
                    message=", ".join(
                        part
                        for part in (
                            f"{low} below min {rule.min:g}" if low else "",
                            f"{high} above max {rule.max:g}" if high else "",
                        )
                        if part
                    ),
                )
            )
    if present.nunique() == 1 and rows > 1:
        findings.append(
            Finding(
                column=name,
                kind="constant",
                count=len(present),
                severity="warning",
                message=f"column {name} has a single value",
            )
        )


def _rule(name: str, series: pd.Series, schema: dict[str, ColumnSchema]) -> Column:
    declared = schema.get(name)
    if declared is None:
        return Column(name, _infer_type(series))
    return Column(
        name,
        declared.type,
        declared.nullable,
        declared.min,
        declared.max,
        tuple(declared.allowed_values) if declared.allowed_values is not None else None,
    )


def validate(dataset: Dataset, raw: pd.DataFrame) -> ValidatedData:
    """Type and check the data; raise DataError when columns the spec names are absent."""
    spec = dataset.spec
    raw = raw.copy()
    raw.columns = [str(c) for c in raw.columns]
    if raw.columns.duplicated().any():
        dup = sorted(set(raw.columns[raw.columns.duplicated()]))
        named = f": {', '.join(dup)}" if header_is_shown([str(c) for c in raw.columns]) else ""
        raise DataError(f"the data has duplicate column names{named}")
    if raw.shape[0] == 0:
        raise DataError("the data has no rows")
    target = target_name(dataset)
    if target not in raw.columns:
        raise DataError(
            f"target column {target!r} is not in the data (columns: {_columns_list(raw)})"
        )
    if spec.features is not None:
        unknown = [f for f in spec.features if f not in raw.columns]
        if unknown:
            raise DataError(
                f"spec.features names column(s) the data lacks: {', '.join(unknown)} "
                f"(columns: {_columns_list(raw)})"
            )
        if target in spec.features:
            raise DataError(f"the target column {target!r} is also listed in spec.features")
        feature_names = list(spec.features)
    else:
        feature_names = [c for c in raw.columns if c != target]
    if not feature_names:
        raise DataError("the data has no feature columns besides the target")
    schema = {c.name: c for c in spec.schema_ or []}
    unknown_schema = [n for n in schema if n not in raw.columns]
    if unknown_schema:
        raise DataError(
            f"spec.schema names column(s) the data lacks: {', '.join(unknown_schema)} "
            f"(columns: {_columns_list(raw)})"
        )

    rows = int(raw.shape[0])
    findings: list[Finding] = []
    typed: dict[str, pd.Series] = {}
    rules: dict[str, Column] = {}
    checked = [
        *feature_names,
        target,
        *(n for n in schema if n not in feature_names and n != target),
    ]
    for name in checked:
        rule = _rule(name, raw[name], schema)
        values, mismatched, infinite = _coerce(raw[name], rule.type)
        if mismatched:
            findings.append(
                Finding(
                    column=name,
                    kind="typeMismatch",
                    count=mismatched,
                    severity="error",
                    message=f"{mismatched} values are not of type {rule.type}"
                    + (f" ({infinite} infinite)" if infinite else ""),
                )
            )
        _check_column(name, values, rule, rows, findings, mismatched)
        typed[name] = values
        rules[name] = rule

    frame = pd.DataFrame({name: typed[name] for name in [*feature_names, target]})
    duplicates = int(frame.duplicated().sum())
    if duplicates:
        share = duplicates / rows
        too_many = share > spec.max_duplicate_fraction
        findings.append(
            Finding(
                kind="duplicates",
                count=duplicates,
                severity="error" if too_many else "warning",
                message=f"{duplicates} rows repeat an earlier row ({share:.1%})"
                + (
                    f", more than maxDuplicateFraction {spec.max_duplicate_fraction}"
                    if too_many
                    else ""
                ),
            )
        )
    frame = frame[frame[target].notna()].reset_index(drop=True)
    return ValidatedData(frame, [rules[n] for n in feature_names], rules[target], findings)


def describe_errors(errors: list[Finding]) -> str:
    """One line naming every error finding."""
    parts = []
    for f in errors:
        where = f"column {f.column}: " if f.column else ""
        parts.append(f"{where}{f.kind} ({f.count}) {f.message}".strip())
    return "data failed validation: " + "; ".join(parts)
