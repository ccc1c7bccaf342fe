"""What every file-like source shares (file, pvc, s3, http): a CSV or Parquet file whose
format is declared or inferred from its extension, fingerprinted by the sha256 of its bytes.

A subclass says how its bytes are reached (`read` / `copy`); the parsing, the format rule and
the fingerprint live here, once.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal
from urllib.parse import urlparse

from pilotage.sources.base import DataFile, LoadedData, Source
from pilotage.storage import StorageError, download, local_path, open_regular, read_bytes
from pilotage.trainer.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from pilotage.api.dataset import DataSource

Format = Literal["csv", "parquet"]
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def format_of(uri: str) -> Format | None:
    """The format the extension of ``uri``'s path names (any case), or None."""
    path = urlparse(uri).path.lower()
    for extension, fmt in EXTENSIONS.items():
        if path.endswith(extension):
            return fmt
    return None


def infer_format(source: DataSource) -> Format:
    """The declared format, else the extension's; DataError when neither says."""
    fmt = source.format or format_of(source.uri)
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {source.uri} from its extension; set spec.source.format "
            "to csv or parquet"
        )
    return fmt


def parse_content(content: bytes, fmt: str, uri: str) -> pd.DataFrame:
    import pandas as pd

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


def file_fingerprint(path: Path, uri: str) -> str:
    """sha256 of a file's bytes, read in blocks (the same as `load`'s of the whole content)."""
    digest = hashlib.sha256()
    with open_regular(path, uri) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FileSource(Source):
    """A CSV or Parquet file behind a URI that `pilotage.storage` reads."""

    def problem(self, source: DataSource) -> str | None:
        if source.format is None and format_of(source.uri) is None:
            return "spec.source.format: cannot infer csv or parquet from the URI; set format"
        return super().problem(source)

    def read(self, source: DataSource) -> bytes:
        """The file's bytes (a StorageError says why not)."""
        return read_bytes(source.uri)

    def copy(self, source: DataSource, sink: BinaryIO) -> None:
        """Stream the file's bytes into ``sink`` (for a remote file)."""
        download(source.uri, sink)

    def load(self, source: DataSource) -> LoadedData:
        fmt = infer_format(source)
        try:
            content = self.read(source)
        except StorageError as exc:
            raise DataError(str(exc)) from exc
        frame = parse_content(content, fmt, source.uri)
        if frame.shape[0] == 0:
            raise DataError(f"{source.uri} has a header but no rows")
        return LoadedData(frame, hashlib.sha256(content).hexdigest())

    @contextmanager
    def local_file(self, source: DataSource) -> Iterator[DataFile | None]:
        fmt = infer_format(source)
        local = local_path(source.uri)
        if local is not None:
            yield DataFile(local, fmt)
            return
        with tempfile.TemporaryDirectory(prefix="pilotage-data-") as tmp:
            copy = Path(tmp) / "data"
            with copy.open("wb") as sink:
                self.copy(source, sink)
            yield DataFile(copy, fmt)
