"""Fault injection for tests and demos: added latency and a rate of 500 answers."""

from __future__ import annotations

import random
from typing import Any

from pilotage.server.errors import bad_request


class Faults:
    def __init__(self, latency_ms: float = 0.0, error_rate: float = 0.0, seed: int = 0) -> None:
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self._random = random.Random(seed)

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or self.error_rate > 0

    def should_fail(self) -> bool:
        return self.error_rate > 0 and self._random.random() < self.error_rate

    def as_json(self) -> dict[str, Any]:
        return {"latencyMs": self.latency_ms, "errorRate": self.error_rate}

    def update(self, body: Any) -> None:
        """Apply ``{"latencyMs": .., "errorRate": ..}`` (either key optional)."""
        if not isinstance(body, dict):
            raise bad_request(
                'body must be a JSON object like {"latencyMs": 200, "errorRate": 0.1}'
            )
        unknown = sorted(set(body) - {"latencyMs", "errorRate"})
        if unknown:
            raise bad_request(
                f"unknown field(s) {', '.join(map(repr, unknown))}; use latencyMs, errorRate"
            )
        latency = body.get("latencyMs", self.latency_ms)
        rate = body.get("errorRate", self.error_rate)
        if not _number(latency) or not 0 <= latency <= 600_000:
            raise bad_request("'latencyMs' must be a number between 0 and 600000")
        if not _number(rate) or not 0 <= rate <= 1:
            raise bad_request("'errorRate' must be a number between 0 and 1")
        self.latency_ms = float(latency)
        self.error_rate = float(rate)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
