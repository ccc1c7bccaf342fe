"""Adaptive batching: merge concurrent requests into one onnxruntime call.

Everything runs on the event loop thread. A request enqueues its rows and awaits a
future. The queue is flushed one loop iteration later (so every request that became
ready in the same poll joins the batch), at once when it holds ``max_batch_size`` rows,
and otherwise no later than ``max_wait_us`` after the first queued request while other
requests are still on their way to the queue. An idle server therefore adds no wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pilotage.server.engine import Prediction
from pilotage.server.errors import RequestError
from pilotage.server.rows import Rows, concat

RunBatch = Callable[[Rows], Prediction]


class Batcher:
    def __init__(self, run: RunBatch, max_batch_size: int, max_wait_us: int) -> None:
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_us / 1e6
        self.arriving = 0  # requests admitted but not yet queued (reading/validating)
        self._queue: list[tuple[Rows, asyncio.Future[Prediction]]] = []
        self._queued_rows = 0
        self._first_at = 0.0
        self._scheduled = False

    async def submit(self, rows: Rows) -> Prediction:
        loop = asyncio.get_running_loop()
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

    def _flush(self) -> None:
        while self._queue:
            batch: list[tuple[Rows, asyncio.Future[Prediction]]] = []
            rows_in_batch = 0
            while self._queue and (
                not batch or rows_in_batch + self._queue[0][0].count <= self.max_batch_size
            ):
                item = self._queue.pop(0)
                batch.append(item)
                rows_in_batch += item[0].count
            self._queued_rows -= rows_in_batch
            self._run(batch)

    def _run(self, batch: list[tuple[Rows, asyncio.Future[Prediction]]]) -> None:
        live = [(rows, fut) for rows, fut in batch if not fut.done()]
        if not live:
            return
        try:
            prediction = self.run(concat([rows for rows, _ in live]))
        except RequestError as exc:
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            for rows, fut in live:  # find the request that broke the batch
                try:
                    fut.set_result(self.run(rows))
                except RequestError as single:
                    fut.set_exception(single)
            return
        except Exception as exc:  # a bug must fail its requests, not strand them
            for _, fut in live:
                fut.set_exception(exc)
            return
        start = 0
        for rows, fut in live:
            fut.set_result(prediction.slice(start, start + rows.count))
            start += rows.count
