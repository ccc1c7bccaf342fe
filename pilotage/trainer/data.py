"""Loading a Dataset's source into a DataFrame, with the fingerprint of its content."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pandas as pd

from pilotage.api.dataset import DataSource
from pilotage.storage import StorageError, read_bytes
from pilotage.trainer.errors import DataError

BUILTIN = ("iris", "wine", "breast_cancer", "diabetes", "digits")
BUILTIN_TARGET = "target"


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    fingerprint: str
    """sha256 of the content: the file's bytes, or the canonical CSV of a builtin frame."""


def _builtin(name: str) -> pd.DataFrame:
    from sklearn import datasets

    loaders = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
        "digits": datasets.load_digits,
    }
    if name not in loaders:
        raise DataError(f"unknown builtin data set {name!r}; use one of {', '.join(BUILTIN)}")
    bunch = loaders[name](as_frame=True)
    frame: pd.DataFrame = bunch.frame
    # Names such as "mean radius" or "od280/od315_of_diluted_wines" are fine in pandas
    # but awkward as ONNX input names and in URLs; keep them identifier-like.
    frame.columns = [_identifier(str(c)) for c in frame.columns]
    return frame


def _identifier(name: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in name.strip())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_") or "column"


def infer_format(uri: str, declared: str | None) -> str:
    if declared:
        return declared
    suffixes = PurePosixPath(urlparse(uri).path).suffixes
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes:
        return "csv"
    raise DataError(
        f"cannot tell the format of {uri} from its extension; set spec.source.format "
        "to csv or parquet"
    )


def parse_content(content: bytes, fmt: str, uri: str) -> pd.DataFrame:
    if not content.strip():
        raise DataError(f"{uri} is empty")
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(content))
        return pd.read_csv(io.BytesIO(content), skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{uri} is empty") from exc
    except Exception as exc:  # pandas and pyarrow raise many parser exception types
        raise DataError(f"cannot parse {uri} as {fmt}: {parse_problem(exc)}") from exc


_TOKENIZING = re.compile(r"Expected \d+ fields in line \d+, saw \d+")


def parse_problem(exc: BaseException) -> str:
    """What a parser said, without repeating the data: parsers quote the text they choke on,
    and the text may be a secret (a Dataset pointed at a credentials file)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"byte {exc.start} is not UTF-8"
    found = _TOKENIZING.search(str(exc))
    if found:
        return found.group(0).replace("Expected", "expected")
    return f"the parser refused it ({type(exc).__name__})"


def load(source: DataSource) -> LoadedData:
    """Read the source; raise DataError with the reason when it cannot be read or parsed."""
    uri = source.uri
    if uri.startswith("builtin://"):
        frame = _builtin(uri.removeprefix("builtin://").strip("/"))
        canonical = frame.to_csv(index=False, float_format="%.17g").encode()
        return LoadedData(frame, hashlib.sha256(canonical).hexdigest())
    fmt = infer_format(uri, source.format)
    try:
        content = read_bytes(uri)
    except StorageError as exc:
        raise DataError(str(exc)) from exc
    frame = parse_content(content, fmt, uri)
    if frame.shape[0] == 0:
        raise DataError(f"{uri} has a header but no rows")
    return LoadedData(frame, hashlib.sha256(content).hexdigest())
