"""Adaptive batching: merge concurrent requests into one onnxruntime call.

A request enqueues its rows and awaits a future; the queue is flushed one loop
iteration later (so every request that became ready in the same poll joins the batch),
at once when it holds ``max_batch_size`` rows, and otherwise no later than
``max_wait_us`` after the first queued request while other requests are still on their
way to the queue. An idle server therefore adds no wait.

Where the onnxruntime call runs:

* on the event loop thread (``worker=None``): batches run one after another inside
  the flush;
* on one worker thread: one batch at a time is handed to the worker; requests that
  arrive meanwhile queue, and the next batch leaves as soon as the worker is free, so
  a busy server makes fewer, larger calls while the loop keeps answering (health
  checks included). Drift counting, metrics and the request futures stay on the loop
  thread: the worker only runs ``score_parts``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass
from functools import partial

from pilotage.server.engine import Prediction
from pilotage.server.errors import RequestError
from pilotage.server.rows import Rows, concat

Predict = Callable[[Rows], Prediction]


@dataclass(slots=True)
class Call:
    """One onnxruntime call: its rows, its answer and how long it took."""

    rows: Rows
    prediction: Prediction
    seconds: float


def timed_call(predict: Predict, rows: Rows) -> Call:
    started = time.perf_counter()
    prediction = predict(rows)
    return Call(rows, prediction, time.perf_counter() - started)


Scored = tuple[list[Prediction | Exception], list[Call]]


def score_parts(predict: Predict, parts: list[Rows]) -> Scored:
    """Score requests' rows in one call; when that fails, each alone, so only the bad
    one fails. Returns one outcome per part and the calls made (for metrics and drift)."""
    try:
        merged = timed_call(predict, parts[0] if len(parts) == 1 else concat(parts))
    except RequestError as exc:
        if len(parts) == 1:
            return [exc], []
        outcomes: list[Prediction | Exception] = []
        calls: list[Call] = []
        for rows in parts:  # find the request that broke the batch
            try:
                call = timed_call(predict, rows)
            except RequestError as single:
                outcomes.append(single)
                continue
            calls.append(call)
            outcomes.append(call.prediction)
        return outcomes, calls
    start = 0
    outcomes = []
    for rows in parts:
        outcomes.append(merged.prediction.slice(start, start + rows.count))
        start += rows.count
    return outcomes, [merged]


Pending = tuple[Rows, "asyncio.Future[Prediction]"]


class Batcher:
    def __init__(
        self,
        predict: Predict,
        record: Callable[[Call], None],
        max_batch_size: int,
        max_wait_us: int,
        worker: Executor | None = None,
    ) -> None:
        self.predict = predict
        self.record = record  # called on the loop thread for every onnxruntime call
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_us / 1e6
        self.worker = worker
        self.arriving = 0  # requests admitted but not yet queued (reading/validating)
        self.running = False  # a batch is on the worker thread now
        self._queue: list[Pending] = []
        self._queued_rows = 0
        self._first_at = 0.0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, rows: Rows) -> Prediction:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        if not self._queue:
            self._first_at = time.perf_counter()
        self._queue.append((rows, future))
        self._queued_rows += rows.count
        if self._queued_rows >= self.max_batch_size:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._tick)
        return await future

    def _tick(self) -> None:
        self._scheduled = False
        if not self._queue:
            return
        waited = time.perf_counter() - self._first_at
        if self.arriving > 0 and waited < self.max_wait_s:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._tick)
            return
        self._flush()

    def _next_batch(self) -> list[Pending]:
        batch: list[Pending] = []
        rows_in_batch = 0
        while self._queue and (
            not batch or rows_in_batch + self._queue[0][0].count <= self.max_batch_size
        ):
            item = self._queue.pop(0)
            batch.append(item)
            rows_in_batch += item[0].count
        self._queued_rows -= rows_in_batch
        return [(rows, fut) for rows, fut in batch if not fut.done()]

    def _flush(self) -> None:
        if self.worker is not None:
            if not self.running:
                self._start_on_worker()
            return  # the batch now running starts the next one when it ends
        while self._queue:
            live = self._next_batch()
            if live:
                try:
                    outcomes, calls = score_parts(self.predict, [rows for rows, _ in live])
                except Exception as exc:  # a bug must fail its requests, not strand them
                    self._fail(live, exc)
                    continue
                self._finish(live, outcomes, calls)

    def _start_on_worker(self) -> None:
        assert self.worker is not None and self._loop is not None
        while self._queue:
            live = self._next_batch()
            if live:
                self.running = True
                job = self.worker.submit(score_parts, self.predict, [rows for rows, _ in live])
                job.add_done_callback(partial(self._from_worker, live))
                return

    def _from_worker(self, live: list[Pending], job: ThreadFuture[Scored]) -> None:
        """On the worker thread: hand the finished batch back to the loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._worker_done, live, job)

    def _worker_done(
        self,
        live: list[Pending],
        job: ThreadFuture[Scored],
    ) -> None:
        self.running = False
        try:
            outcomes, calls = job.result()
        except Exception as exc:
            self._fail(live, exc)
        else:
            self._finish(live, outcomes, calls)
        if self._queue:
            self._start_on_worker()

    def _finish(
        self, live: list[Pending], outcomes: list[Prediction | Exception], calls: list[Call]
    ) -> None:
        for call in calls:
            self.record(call)
        for (_, fut), outcome in zip(live, outcomes, strict=True):
            if fut.done():  # the client went away meanwhile
                continue
            if isinstance(outcome, Exception):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)

    @staticmethod
    def _fail(live: list[Pending], exc: Exception) -> None:
        for _, fut in live:
            if not fut.done():
                fut.set_exception(exc)
