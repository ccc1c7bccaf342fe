"""`builtin://NAME`: the data sets scikit-learn ships, read whole (they are small).

Column names become identifier-like (`sepal length (cm)` → `sepal_length_cm`): they are
ONNX input names and metric labels. The fingerprint is the sha256 of the frame written as
CSV with 17 significant digits, so it changes only when the data does.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pilotage.sources.base import LoadedData, Source, register
from pilotage.trainer.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from pilotage.api.dataset import DataSource

DATASETS = ("iris", "wine", "breast_cancer", "diabetes", "digits")
TARGET = "target"
"""The target column of every builtin data set (the default of `spec.target`)."""


def name_of(source: DataSource) -> str:
    return source.uri.removeprefix("builtin://").strip("/")


@register
class BuiltinSource(Source):
    schemes = ("builtin",)
    default_target = TARGET

    def problem(self, source: DataSource) -> str | None:
        name = source.uri.removeprefix("builtin://")
        if name not in DATASETS:
            return (
                f"spec.source.uri: unknown builtin data set {name!r} (one of {', '.join(DATASETS)})"
            )
        return super().problem(source)

    def load(self, source: DataSource) -> LoadedData:
        frame = _frame(name_of(source))
        canonical = frame.to_csv(index=False, float_format="%.17g").encode()
        return LoadedData(frame, hashlib.sha256(canonical).hexdigest())


def _frame(name: str) -> pd.DataFrame:
    from sklearn import datasets

    loaders = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
        "digits": datasets.load_digits,
    }
    if name not in loaders:
        raise DataError(f"unknown builtin data set {name!r}; use one of {', '.join(DATASETS)}")
    frame: pd.DataFrame = loaders[name](as_frame=True).frame
    # Names such as "mean radius" or "od280/od315_of_diluted_wines" are fine in pandas
    # but awkward as ONNX input names and in URLs; keep them identifier-like.
    frame.columns = [_identifier(str(c)) for c in frame.columns]
    return frame


def _identifier(name: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in name.strip())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_") or "column"
