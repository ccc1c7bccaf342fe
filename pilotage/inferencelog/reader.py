"""Reading the logs of one deployment over a time window, one record at a time.

::

    from datetime import UTC, datetime, timedelta
    from pilotage.inferencelog.reader import LogReader

    end = datetime.now(UTC)
    reader = LogReader("file:///var/log/pilotage", "default", "iris", end - timedelta(days=7), end)
    for record in reader:                 # dicts, oldest partition first
        if record["kind"] == "request": ...
        else: ...                          # "label": {"id", "label" | "value", ...}
    reader.stats                           # files, records, labels, torn, invalid, unreadable

The window is ``[start, end)`` on each record's own ``time``. Only the hour partitions
that overlap it are listed, and each file is read line by line (S3 objects are streamed),
so memory stays flat however large the window is. A line that does not parse is skipped
and counted: ``torn`` when it is the unterminated last line of a file (a router killed
mid-write, or a file still being written), ``invalid`` otherwise. A file that cannot be
read is counted in ``unreadable`` with its reason in ``errors``. Reading never raises for
bad data; it raises ``LogReadError`` only for a sink URI it cannot read at all (an
``http(s)://`` collector, an unknown scheme, a ``pvc://`` URI that leaves its claim).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from pilotage.inferencelog.record import LABEL, REQUEST, iso_time
from pilotage.inferencelog.sinks import SUFFIX, partition_path, s3_client
from pilotage.storage import StorageError, local_path

log = logging.getLogger("pilotage.inferencelog")

MAX_ERRORS = 20
_CHUNK = 1 << 16


class LogReadError(ValueError):
    """A log location that cannot be read at all."""


@dataclass
class ReadStats:
    partitions: int = 0
    files: int = 0
    records: int = 0  # request records yielded
    labels: int = 0  # label records yielded
    torn: int = 0  # unterminated, unparsable last lines skipped
    invalid: int = 0  # other unparsable lines skipped
    unreadable: int = 0  # files that could not be read (see errors)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "files": self.files,
            "records": self.records,
            "labels": self.labels,
            "torn": self.torn,
            "invalid": self.invalid,
            "unreadable": self.unreadable,
            "errors": list(self.errors),
        }


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def hours(start: datetime, end: datetime) -> Iterator[tuple[str, str]]:
    """(date, hour) of every hour partition that overlaps ``[start, end)``."""
    t = _utc(start).replace(minute=0, second=0, microsecond=0)
    stop = _utc(end)
    while t < stop:
        yield t.strftime("%Y-%m-%d"), t.strftime("%H")
        t += timedelta(hours=1)


def lines(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """(line without its newline, whether it had one) over a stream of byte chunks."""
    rest = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = rest + chunk
        parts = data.split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part, True
    if rest:
        yield rest, False


class LogReader:
    """Records of ``namespace/deployment`` with ``start <= time < end``, streamed."""

    def __init__(
        self,
        uri: str,
        namespace: str,
        deployment: str,
        start: datetime,
        end: datetime,
        kinds: Iterable[str] = (REQUEST, LABEL),
        client: Any = None,
    ):
        parts = urlsplit(uri)
        if parts.scheme not in ("file", "pvc", "s3"):
            raise LogReadError(
                f"{uri}: only file://, pvc:// and s3:// logs can be read back "
                "(an http(s):// collector keeps its own copy)"
            )
        self.scheme = "s3" if parts.scheme == "s3" else "file"
        if parts.scheme == "s3":
            self.root = parts.path.strip("/")
        else:
            try:
                self.root = str(local_path(uri))
            except StorageError as exc:
                raise LogReadError(str(exc)) from None
        self.bucket = parts.netloc
        self.namespace = namespace
        self.deployment = deployment
        self.start = _utc(start)
        self.end = _utc(end)
        self.kinds = frozenset(kinds)
        self._client = client
        self.stats = ReadStats()

    # ---- listing -------------------------------------------------------------------
    def partitions(self) -> Iterator[str]:
        """Partition folders (relative to the sink root) in the window, oldest first."""
        for date, hour in hours(self.start, self.end):
            yield partition_path(self.namespace, self.deployment, date, hour)

    def files(self) -> Iterator[str]:
        """Every log file of the window's partitions: paths (file) or keys (S3)."""
        for partition in self.partitions():
            found = False
            for name in self._list(partition):
                found = True
                yield name
            if found:
                self.stats.partitions += 1

    def _list(self, partition: str) -> Iterator[str]:
        if self.scheme == "file":
            folder = Path(self.root) / partition
            try:
                names = sorted(p.name for p in folder.iterdir() if p.name.endswith(SUFFIX))
            except FileNotFoundError:
                return
            except OSError as exc:
                self._unreadable(str(folder), exc)
                return
            for name in names:
                yield str(folder / name)
            return
        prefix = f"{self.root}/{partition}/" if self.root else f"{partition}/"
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(SUFFIX):
                        yield obj["Key"]
        except Exception as exc:  # botocore's errors are many; each means "not listed"
            self._unreadable(f"s3://{self.bucket}/{prefix}", exc)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    # ---- reading -------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        low, high = iso_time(self.start.timestamp()), iso_time(self.end.timestamp())
        kinds = self.kinds
        stats = self.stats
        for name in self.files():
            stats.files += 1
            for record in self._records(name):
                kind = record.get("kind")
                t = record.get("time")
                if kind not in kinds or not isinstance(t, str) or not low <= t < high:
                    continue
                if kind == LABEL:
                    stats.labels += 1
                else:
                    stats.records += 1
                yield record

    def _chunks(self, name: str) -> Iterator[bytes]:
        if self.scheme == "file":
            with open(name, "rb") as f:
                while chunk := f.read(_CHUNK):
                    yield chunk
            return
        body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        try:
            yield from body.iter_chunks(_CHUNK)
        finally:
            body.close()

    def _records(self, name: str) -> Iterator[dict[str, Any]]:
        stats = self.stats
        try:
            for line, complete in lines(self._chunks(name)):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    record = None
                if not isinstance(record, dict):
                    if complete:
                        stats.invalid += 1
                    else:
                        stats.torn += 1
                    continue
                yield record
        except Exception as exc:  # a file that vanished or a stream cut: count, go on
            self._unreadable(name, exc)

    def _unreadable(self, name: str, exc: Exception) -> None:
        self.stats.unreadable += 1
        if len(self.stats.errors) < MAX_ERRORS:
            self.stats.errors.append(f"{name}: {exc}")
        log.warning("inference log %s unreadable: %s", name, exc)
