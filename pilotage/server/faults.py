"""Fault injection for tests and demos: added latency, a rate of 500 answers, and a
serial latency that makes a replica's capacity independent of the host's cores."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from pilotage.server.errors import bad_request

MAX_LATENCY_MS = 600_000
KEYS = ("latencyMs", "serialLatencyMs", "errorRate")


class Faults:
    """``latencyMs`` delays each inference request on its own (requests overlap);
    ``serialLatencyMs`` holds the server's single slot that long per request, so
    concurrent requests queue behind each other as on a model with one execution unit
    (an accelerator, a locked session): one replica then answers at most
    1000 / serialLatencyMs requests per second whatever the machine's cores."""

    def __init__(
        self,
        latency_ms: float = 0.0,
        error_rate: float = 0.0,
        seed: int = 0,
        serial_latency_ms: float = 0.0,
    ) -> None:
        self.latency_ms = latency_ms
        self.serial_latency_ms = serial_latency_ms
        self.error_rate = error_rate
        self._random = random.Random(seed)
        self._slot: asyncio.Lock | None = None

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or self.serial_latency_ms > 0 or self.error_rate > 0

    def should_fail(self) -> bool:
        return self.error_rate > 0 and self._random.random() < self.error_rate

    async def delay(self) -> None:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        if self.serial_latency_ms > 0:
            if self._slot is None:  # created in the server's event loop
                self._slot = asyncio.Lock()
            async with self._slot:
                await asyncio.sleep(self.serial_latency_ms / 1000)

    def as_json(self) -> dict[str, Any]:
        return {
            "latencyMs": self.latency_ms,
            "serialLatencyMs": self.serial_latency_ms,
            "errorRate": self.error_rate,
        }

    def update(self, body: Any) -> None:
        """Apply ``{"latencyMs": .., "serialLatencyMs": .., "errorRate": ..}`` (each key
        optional)."""
        if not isinstance(body, dict):
            raise bad_request(
                'body must be a JSON object like {"latencyMs": 200, "errorRate": 0.1}'
            )
        unknown = sorted(set(body) - set(KEYS))
        if unknown:
            raise bad_request(
                f"unknown field(s) {', '.join(map(repr, unknown))}; use {', '.join(KEYS)}"
            )
        latency = body.get("latencyMs", self.latency_ms)
        serial = body.get("serialLatencyMs", self.serial_latency_ms)
        rate = body.get("errorRate", self.error_rate)
        for key, value in (("latencyMs", latency), ("serialLatencyMs", serial)):
            if not _number(value) or not 0 <= value <= MAX_LATENCY_MS:
                raise bad_request(f"'{key}' must be a number between 0 and {MAX_LATENCY_MS}")
        if not _number(rate) or not 0 <= rate <= 1:
            raise bad_request("'errorRate' must be a number between 0 and 1")
        self.latency_ms = float(latency)
        self.serial_latency_ms = float(serial)
        self.error_rate = float(rate)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
