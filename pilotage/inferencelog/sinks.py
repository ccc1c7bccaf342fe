"""Where batches of records go: files, S3 objects or a CloudEvents collector.

Partition layout (file and S3 sinks), under the sink URI::

    {namespace}/{deployment}/date=YYYY-MM-DD/hour=HH/{YYYYmmddTHHMMSS}-{writer}-{seq}.jsonl

``date``/``hour`` are the UTC time of the records inside (a record goes to the
partition of its own time); ``writer`` is the host name, process id and 6 random hex
digits of the writing router, so replicas sharing one volume or bucket never write the
same name; ``seq`` counts the files one writer opened. A file is rolled (closed, a new
one opened) after ``rollSeconds`` or ``rollBytes``; on S3 a rolled file is one
``PutObject`` (an object cannot be appended to), so what is not yet rolled lives in
memory, at most ``rollBytes`` per partition.

All sink calls run on the writer thread, never on the router's event loop. A failure
raises ``SinkError`` with the number of records lost; the writer counts them as drops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

import orjson

from pilotage.inferencelog.config import LoggingConfig
from pilotage.inferencelog.record import encode
from pilotage.storage import local_path

log = logging.getLogger("pilotage.inferencelog")

SUFFIX = ".jsonl"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
EVENT_TYPES = {
    "request": "io.pilotage.inference.request",
    "label": "io.pilotage.inference.label",
}


class SinkError(Exception):
    def __init__(self, message: str, lost: int):
        super().__init__(message)
        self.lost = lost


class Sink(Protocol):
    def write(self, records: list[dict[str, Any]], now: float) -> None: ...

    def tick(self, now: float) -> None: ...

    def close(self) -> None: ...


def writer_id() -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:63] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def partition_path(namespace: str, deployment: str, date: str, hour: str) -> str:
    """The partition folder, relative to the sink root: ``ns/dep/date=D/hour=H``."""
    return f"{namespace}/{deployment}/date={date}/hour={hour}"


def _partition_of(record: dict[str, Any]) -> tuple[str, str]:
    t: str = record["time"]  # 2026-12-03T14:05:09.123456Z
    return t[:10], t[11:13]


def _group(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(_partition_of(r), []).append(r)
    return groups


@dataclass
class _Open:
    name: str
    opened: float
    size: int = 0
    records: int = 0
    handle: BinaryIO | None = None
    pending: list[bytes] = field(default_factory=list)


class _Rolling:
    """Shared rolling logic: one open file per partition, rolled by age and size."""

    def __init__(self, config: LoggingConfig, deployment: str):
        self.config = config
        self.deployment = deployment
        self.writer = writer_id()
        self.seq = 0
        self.open: dict[tuple[str, str], _Open] = {}

    def _name(self, key: tuple[str, str], now: float) -> str:
        self.seq += 1
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
        folder = partition_path(self.config.namespace, self.deployment, *key)
        return f"{folder}/{stamp}-{self.writer}-{self.seq:05d}{SUFFIX}"

    def _due(self, f: _Open, now: float) -> bool:
        return now - f.opened >= self.config.roll_seconds or f.size >= self.config.roll_bytes

    def _start(self, f: _Open) -> None:
        return None

    def _append(self, f: _Open, data: bytes, records: int) -> None:
        raise NotImplementedError

    def _roll(self, f: _Open) -> None:
        raise NotImplementedError

    def write(self, records: list[dict[str, Any]], now: float) -> None:
        """Append to each record's partition file; a file that reaches ``rollBytes`` is
        rolled between two records, so no file grows much past it."""
        lost = 0
        error: SinkError | None = None
        for key, group in _group(records).items():
            i = 0
            while i < len(group):
                f = self.open.get(key)
                if f is not None and self._due(f, now):
                    del self.open[key]
                    try:
                        self._roll(f)
                    except SinkError as exc:
                        error, lost = exc, lost + exc.lost
                    f = None
                if f is None:
                    f = _Open(self._name(key, now), now)
                    try:
                        self._start(f)
                    except SinkError as exc:
                        error, lost = exc, lost + len(group) - i
                        break
                    self.open[key] = f
                room = self.config.roll_bytes - f.size
                chunk: list[bytes] = []
                size = 0
                while i < len(group) and (not chunk or size < room):
                    line = encode((group[i],))
                    chunk.append(line)
                    size += len(line)
                    i += 1
                try:
                    self._append(f, b"".join(chunk), len(chunk))
                except SinkError as exc:
                    error, lost = exc, lost + exc.lost
                    continue
                f.size += size
                f.records += len(chunk)
        if error is not None:
            raise SinkError(str(error), lost)

    def tick(self, now: float) -> None:
        """Roll the files that are old enough (or big enough)."""
        lost = 0
        error: SinkError | None = None
        for key, f in list(self.open.items()):
            if self._due(f, now):
                del self.open[key]
                try:
                    self._roll(f)
                except SinkError as exc:
                    error, lost = exc, lost + exc.lost
        if error is not None:
            raise SinkError(str(error), lost)

    def close(self) -> None:
        self.tick(float("inf"))


class FileSink(_Rolling):
    """Appends to files under a directory: ``file:///dir``, or ``pvc://CLAIM/dir`` (the
    claim mounted at ``$PILOTAGE_PVC_ROOT/CLAIM``, as the operator mounts it)."""

    def __init__(self, config: LoggingConfig, deployment: str):
        super().__init__(config, deployment)
        root = local_path(config.sink_uri)  # file:///dir, or pvc://CLAIM/dir under its mount
        assert root is not None
        self.root = root

    def _start(self, f: _Open) -> None:
        path = self.root / f.name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            f.handle = open(path, "ab")  # noqa: SIM115 - closed on roll
        except OSError as exc:
            raise SinkError(f"{path}: {exc.strerror or exc}", 0) from None

    def _append(self, f: _Open, data: bytes, records: int) -> None:
        assert f.handle is not None
        try:
            f.handle.write(data)
            f.handle.flush()  # in the kernel now: a killed router loses at most a torn line
        except OSError as exc:
            raise SinkError(f"{self.root / f.name}: {exc.strerror or exc}", records) from None

    def _roll(self, f: _Open) -> None:
        if f.handle is not None:
            with contextlib.suppress(OSError):
                f.handle.close()


def s3_client(timeout: float | None = None) -> Any:
    import boto3
    from botocore.config import Config

    if timeout is None:
        return boto3.client("s3")
    return boto3.client(
        "s3",
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )


class S3Sink(_Rolling):
    """One object per rolled file, written with PutObject when it rolls."""

    def __init__(self, config: LoggingConfig, deployment: str, client: Any = None):
        super().__init__(config, deployment)
        parts = urlsplit(config.sink_uri)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.client = client or s3_client(config.sink_timeout)

    def _append(self, f: _Open, data: bytes, records: int) -> None:
        f.pending.append(data)

    def _roll(self, f: _Open) -> None:
        if not f.pending:
            return
        name = f"{self.prefix}/{f.name}" if self.prefix else f.name
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=b"".join(f.pending))
        except Exception as exc:  # botocore raises many kinds; all mean the object is lost
            raise SinkError(f"s3://{self.bucket}/{name}: {exc}", f.records) from None


class HttpSink:
    """POSTs each batch to a collector as a CloudEvents JSON batch (structured mode)."""

    def __init__(self, config: LoggingConfig, deployment: str):
        self.url = config.sink_uri
        self.timeout = config.sink_timeout
        self.source = f"/pilotage/{config.namespace}/{deployment}"

    def event(self, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": uuid.uuid4().hex,
            "source": self.source,
            "type": EVENT_TYPES[record["kind"]],
            "subject": record["id"],
            "time": record["time"],
            "datacontenttype": "application/json",
            "data": record,
        }

    def write(self, records: list[dict[str, Any]], now: float) -> None:
        body = orjson.dumps([self.event(r) for r in records])
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"content-type": CLOUDEVENTS_BATCH}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise SinkError(f"{self.url}: collector answered {exc.code}", len(records)) from None
        except (OSError, ValueError) as exc:
            raise SinkError(f"{self.url}: {exc}", len(records)) from None

    def tick(self, now: float) -> None:
        return None

    def close(self) -> None:
        return None


def open_sink(config: LoggingConfig, deployment: str) -> Sink:
    scheme = config.scheme
    if scheme in ("file", "pvc"):
        return FileSink(config, deployment)
    if scheme == "s3":
        return S3Sink(config, deployment)
    return HttpSink(config, deployment)
