"""The writer: a bounded hand-off from the event loop to one background thread.

``InferenceLogger.offer`` is all the proxy calls per sampled request: it appends the raw
``Exchange`` to a deque, or counts a drop when the buffer already holds
``bufferRecords`` records or ``bufferBytes`` bytes — no parsing, no I/O, no lock. The
writer thread wakes every ``flushSeconds``, turns what waits into records, hands them to
the sink as one batch and rolls files by age and size. A sink that hangs holds only the
writer thread: the buffer fills and further records are dropped (counted), the client's
request never waits. ``close`` writes what is left and closes the files (shutdown).

Every counter is written by one thread only (the event loop or the writer), so no lock
is needed; readers add them up.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any

import orjson

from pilotage.inferencelog.config import LoggingConfig
from pilotage.inferencelog.record import (
    Exchange,
    FeatureNames,
    Label,
    label_record,
    request_record,
)
from pilotage.inferencelog.sinks import Sink, SinkError, open_sink

log = logging.getLogger("pilotage.inferencelog")

MAX_BATCH = 5_000
NAMES_RETRY_SECONDS = 30.0


class MetadataNames:
    """Feature names from the answering server's V2 model metadata (``parameters.features``),
    fetched once per (server, model, version) on the writer thread; a failure is retried
    after 30 s, meanwhile positional rows are written without features."""

    def __init__(self, timeout: float = 2.0):
        self.timeout = timeout
        self._known: dict[tuple[str, str, str], list[str]] = {}
        self._failed: dict[tuple[str, str, str], float] = {}

    def __call__(self, upstream: str, model: str, version: str) -> list[str] | None:
        key = (upstream, model, version)
        names = self._known.get(key)
        if names is not None:
            return names
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed < NAMES_RETRY_SECONDS:
            return None
        try:
            with urllib.request.urlopen(
                f"{upstream.rstrip('/')}/v2/models/{model}", timeout=self.timeout
            ) as response:
                doc = orjson.loads(response.read())
            features = doc["parameters"]["features"]
            names = [f["name"] if isinstance(f, dict) else str(f) for f in features]
        except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as exc:
            log.warning("feature names of %s at %s unknown: %s", model, upstream, exc)
            self._failed[key] = time.monotonic()
            return None
        self._known[key] = names
        return names


class InferenceLogger:
    def __init__(
        self,
        config: LoggingConfig,
        deployment: str,
        names: FeatureNames | None = None,
        sink: Sink | None = None,
    ):
        self.config = config
        self.deployment = deployment
        self.names: FeatureNames = names or MetadataNames()
        self._sink = sink
        self._queue: deque[Exchange | Label] = deque()
        self._rate = config.sample_rate
        self._random = random.random
        # event-loop side
        self.offered = 0
        self.dropped_full = 0
        self._bytes_in = 0
        # writer side
        self.written = 0
        self.labels_written = 0
        self.dropped_sink = 0
        self.sink_errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._bytes_out = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- event loop ----------------------------------------------------------------
    def sample(self) -> bool:
        return self._rate >= 1.0 or self._random() < self._rate

    def offer(self, item: Exchange | Label, size: int = 0) -> bool:
        """Queue one record for the writer; False (counted) when the buffer is full."""
        self.offered += 1
        if (
            len(self._queue) >= self.config.buffer_records
            or self._bytes_in - self._bytes_out + size > self.config.buffer_bytes
        ):
            self.dropped_full += 1
            return False
        self._bytes_in += size
        self._queue.append(item)
        return True

    # ---- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            if self._sink is None:
                self._sink = open_sink(self.config, self.deployment)
            self._thread = threading.Thread(
                target=self._run, name=f"inference-log-{self.deployment}", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 10.0) -> bool:
        """Write what waits, close the files; True when the writer finished in time."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- writer thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.config.flush_seconds):
            self._flush(time.time())
        while self._queue:
            self._flush(time.time())
        self._sink_call(lambda: self._sink.close() if self._sink else None)

    def _flush(self, now: float) -> None:
        queue = self._queue
        records: list[dict[str, Any]] = []
        size = labels = 0
        cfg = self.config
        # Only what is queued now: the event loop appends while this thread pops, and a
        # batch that kept growing could hold more than one buffer's worth in a hung sink.
        for _ in range(min(len(queue), MAX_BATCH)):
            item = queue.popleft()
            try:
                if isinstance(item, Label):
                    records.append(label_record(item, cfg.namespace, self.deployment))
                    labels += 1
                else:
                    size += len(item.body) + len(item.answer or b"")
                    records.append(
                        request_record(item, cfg.namespace, self.deployment, self.names, cfg.redact)
                    )
            except Exception as exc:  # one odd record never stops the writer
                log.exception("inference log record dropped")
                self._failed(f"record: {exc}", 1, now)
        self._bytes_out += size
        sink = self._sink
        assert sink is not None
        if records and self._sink_call(lambda: sink.write(records, now)):
            self.written += len(records) - labels
            self.labels_written += labels
        self._sink_call(lambda: sink.tick(now))

    def _sink_call(self, call: Any) -> bool:
        try:
            call()
        except SinkError as exc:
            self._failed(str(exc), exc.lost, time.time())
            return False
        except Exception as exc:  # a sink bug must not kill the writer thread
            log.exception("inference log sink failed")
            self._failed(f"sink: {exc}", 0, time.time())
            return False
        return True

    def _failed(self, message: str, lost: int, now: float) -> None:
        self.sink_errors += 1
        self.dropped_sink += lost
        if self.last_error != message:
            log.error("inference log: %s (%d records lost)", message, lost)
        self.last_error = message
        self.last_error_at = now

    # ---- reading -------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_sink

    def stats(self) -> dict[str, Any]:
        return {
            "sampleRate": self.config.sample_rate,
            "sink": self.config.scheme,
            "offered": self.offered,
            "written": self.written,
            "labelsWritten": self.labels_written,
            "dropped": self.dropped,
            "droppedBufferFull": self.dropped_full,
            "droppedSinkFailed": self.dropped_sink,
            "sinkErrors": self.sink_errors,
            "queued": len(self._queue),
            "lastError": self.last_error,
        }
