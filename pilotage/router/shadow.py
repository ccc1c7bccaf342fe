"""Shadow traffic: copies of answered requests go to the shadow variant, off the client's path.

The proxy hands a copy to ``ShadowMirror.offer`` *after* the client's answer is sent,
so the client never waits. Copies wait in a bounded queue drained by a fixed number
of workers; when the queue is full the copy is dropped and counted, so a slow or
dead shadow costs neither memory nor primary latency. After a connection failure
the shadow is given a short back-off, during which copies are dropped (counted)
rather than spending CPU on doomed connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pilotage.inferencelog.record import Exchange
from pilotage.inferencelog.writer import InferenceLogger
from pilotage.router.predictions import compare, extract_predictions
from pilotage.router.stats import ShadowStats, VariantStats
from pilotage.router.upstream import UpstreamError, UpstreamPool, UpstreamTimeout
from pilotage.wire.routes import Variant

log = logging.getLogger("pilotage.router.shadow")

BACKOFF_SECONDS = 1.0


class ShadowCopy:
    __slots__ = (
        "body",
        "headers",
        "logger",
        "method",
        "path",
        "pool",
        "primary_body",
        "request_id",
        "stats",
        "target",
        "timeout",
        "tolerance",
        "variant",
    )

    def __init__(
        self,
        pool: UpstreamPool,
        stats: VariantStats,
        method: bytes,
        target: bytes,
        headers: bytes,
        body: bytes,
        primary_body: bytes,
        timeout: float,
        tolerance: float,
        logger: InferenceLogger | None = None,
        request_id: bytes = b"",
        path: str = "",
        variant: Variant | None = None,
    ):
        self.pool = pool
        self.stats = stats
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.primary_body = primary_body
        self.timeout = timeout
        self.tolerance = tolerance
        self.logger = logger  # set when shadow answers are logged too
        self.request_id = request_id
        self.path = path
        self.variant = variant


class ShadowMirror:
    def __init__(self, stats: ShadowStats, capacity: int = 256, workers: int = 8):
        if capacity < 1 or workers < 1:
            # a capacity of 0 would make asyncio.Queue unbounded
            raise ValueError(f"capacity and workers must be at least 1, got {capacity}, {workers}")
        self.stats = stats
        self.capacity = capacity
        self._queue: asyncio.Queue[ShadowCopy] = asyncio.Queue(capacity)
        self._workers: list[asyncio.Task[None]] = []
        self._worker_count = workers
        self._backoff_until = 0.0

    def start(self) -> None:
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(self._worker_count)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def offer(self, copy: ShadowCopy) -> None:
        stats = self.stats
        if self._backoff_until and time.monotonic() < self._backoff_until:
            stats.dropped += 1
            return
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            stats.dropped += 1
            return
        stats.mirrored += 1

    async def _work(self) -> None:
        queue = self._queue
        while True:
            copy = await queue.get()
            try:
                await self._mirror(copy)
            except Exception:  # a worker must never die; the copy counts as an error
                log.exception("shadow copy failed unexpectedly")
                self.stats.error += 1

    async def _mirror(self, copy: ShadowCopy) -> None:
        stats = self.stats
        started = time.perf_counter()
        try:
            response = await copy.pool.request(
                copy.method, copy.target, copy.headers, copy.body, copy.timeout
            )
        except UpstreamError as exc:
            copy.stats.record(exc.status, time.perf_counter() - started)
            self._log(copy, exc.status, None, str(exc), started)
            stats.error += 1
            if not isinstance(exc, UpstreamTimeout):
                self._backoff_until = time.monotonic() + BACKOFF_SECONDS
            return
        self._backoff_until = 0.0
        copy.stats.record(response.status, time.perf_counter() - started)
        self._log(copy, response.status, response.body, None, started)
        if response.status >= 300:
            stats.error += 1
            return
        primary = extract_predictions(copy.primary_body)
        shadow = extract_predictions(response.body)
        if primary is None or shadow is None:
            stats.error += 1
            return
        agree, diff = compare(primary, shadow, copy.tolerance)
        if agree:
            stats.agree += 1
        else:
            stats.disagree += 1
        if diff is not None:
            stats.numeric_compared += 1
            stats.abs_diff_sum += diff

    @staticmethod
    def _log(
        copy: ShadowCopy, status: int, answer: bytes | None, error: str | None, started: float
    ) -> None:
        logger, variant = copy.logger, copy.variant
        if logger is None or variant is None or not logger.sample():
            return
        logger.offer(
            Exchange(
                time.time(), copy.request_id, variant.name, variant.version, variant.url,
                copy.path, copy.body, status, answer, time.perf_counter() - started, error,
                True,
            ),
            len(copy.body) + len(answer or b""),
        )  # fmt: skip
