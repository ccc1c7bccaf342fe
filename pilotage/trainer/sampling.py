"""The model card's reference sample: a bounded, seeded random draw of training rows.

The DriftMonitor compares it with a server's reservoir of recent rows for the exact
KS and Wasserstein tests. Values are written the way the server sees them (numbers as
float32 in their shortest decimal form), so a value that was in training reads the
same on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pilotage.api.modelcard import BaselineSample, SampleValue
from pilotage.trainer.validate import Column

SAMPLE_ROWS = 500
# Cap on rows times features: a wide table gets fewer rows, so model.json stays small
# (10,000 values are 50-100 KB of JSON).
SAMPLE_VALUES = 10_000


def sample_size(rows: int, features: int, limit: int = SAMPLE_ROWS) -> int:
    """How many rows the sample holds: at most ``limit``, at most SAMPLE_VALUES values."""
    if rows <= 0 or features <= 0 or limit <= 0:
        return 0
    return min(rows, limit, max(1, SAMPLE_VALUES // features))


def _number(value: object) -> float | None:
    x = float(np.float32(value))  # type: ignore[arg-type]
    if not math.isfinite(x):
        return None
    return float(str(np.float32(x)))


def _value(value: object, column: Column) -> SampleValue:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if column.type == "category":
        return str(value)
    return _number(value)


def training_sample(
    frame: pd.DataFrame, features: Sequence[Column], seed: int, limit: int = SAMPLE_ROWS
) -> BaselineSample:
    """Up to ``limit`` rows of ``frame`` (the training split) drawn without replacement
    with ``seed``, in their order in the frame; the same frame and seed give the same sample."""
    size = sample_size(len(frame), len(features), limit)
    picked = np.sort(np.random.default_rng(seed).choice(len(frame), size=size, replace=False))
    columns = [frame[f.name].iloc[picked].tolist() for f in features]
    rows = [
        [_value(col[i], f) for col, f in zip(columns, features, strict=True)] for i in range(size)
    ]
    return BaselineSample(columns=[f.name for f in features], rows=rows)
