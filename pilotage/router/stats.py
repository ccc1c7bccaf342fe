"""Counters the router keeps: per variant, for shadow comparisons and for live feedback.

They are written into the stats document by ``pilotage.wire.router_stats``.

Everything is cumulative since the router started (like Prometheus counters): the
control plane takes differences between two reads. One ``VariantStats`` exists per
(variant name, model version), so a new canary version starts from zero while the
Prometheus series for the variant name stay continuous per version label.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from pilotage.wire.router_stats import (
    feedback_document,
    forced_document,
    shadow_document,
    variant_document,
)

# Upper bounds (seconds) of the latency histogram: fine enough for a p99 SLO check.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
)  # fmt: skip


class FeedbackStats:
    __slots__ = ("abs_error_sum", "correct", "labelled", "valued")

    def __init__(self) -> None:
        self.labelled = 0
        self.correct = 0
        self.valued = 0
        self.abs_error_sum = 0.0

    def to_json(self) -> dict[str, Any]:
        return feedback_document(self)


class ForcedStats:
    """Requests a tester forced onto a variant (x-pilotage-variant): counted apart, so that
    they never reach the latency, errors and feedback the analysis judges."""

    __slots__ = ("codes", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.codes: dict[int, int] = {}

    def record(self, status: int, seconds: float) -> None:
        self.requests += 1
        self.codes[status] = self.codes.get(status, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return forced_document(self)


# What an answer the router could not write to its client is counted as.
UNWRITTEN = 502


class VariantStats:
    """Requests, codes and latency of one (variant, version)."""

    __slots__ = (
        "_busy",
        "_changed",
        "codes",
        "errors",
        "feedback",
        "forced",
        "in_flight",
        "latency_counts",
        "latency_sum",
        "name",
        "requests",
        "retried_on_stable",
        "version",
    )

    def __init__(self, name: str, version: str):
        self.name = name
        self.version = version
        self.requests = 0
        self.errors = 0
        self.retried_on_stable = 0
        self.codes: dict[int, int] = {}
        self.latency_counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.latency_sum = 0.0
        self.feedback = FeedbackStats()
        self.forced = ForcedStats()
        # requests in flight to the variant's replicas, and their integral over time (the
        # autoscaler's concurrency: its growth over a window / the window's length)
        self.in_flight = 0
        self._busy = 0.0
        self._changed = time.monotonic()

    def begin(self) -> None:
        now = time.monotonic()
        self._busy += self.in_flight * (now - self._changed)
        self._changed = now
        self.in_flight += 1

    def end(self) -> None:
        now = time.monotonic()
        self._busy += self.in_flight * (now - self._changed)
        self._changed = now
        self.in_flight -= 1

    def busy_seconds(self) -> float:
        """Integral of requests in flight over time since the router started (seconds)."""
        return self._busy + self.in_flight * (time.monotonic() - self._changed)

    def record(self, status: int, seconds: float) -> None:
        self.requests += 1
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        if status >= 500:
            self.errors += 1
        self.latency_counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.latency_sum += seconds

    def unwritten(self, status: int) -> None:
        """The answer counted as ``status`` never reached the client: count it as an error
        (502) instead, so that stats do not report a success nobody received."""
        codes = self.codes
        if codes.get(status, 0) > 0:
            codes[status] -= 1
            if not codes[status]:
                del codes[status]
            if status >= 500:
                self.errors -= 1
        codes[UNWRITTEN] = codes.get(UNWRITTEN, 0) + 1
        self.errors += 1

    def to_json(self) -> dict[str, Any]:
        return variant_document(self, LATENCY_BOUNDS)


class ShadowStats:
    __slots__ = (
        "abs_diff_sum",
        "agree",
        "disagree",
        "dropped",
        "error",
        "mirrored",
        "numeric_compared",
    )

    def __init__(self) -> None:
        self.mirrored = 0
        self.dropped = 0
        self.agree = 0
        self.disagree = 0
        self.error = 0
        self.abs_diff_sum = 0.0
        self.numeric_compared = 0

    def to_json(self) -> dict[str, Any]:
        return shadow_document(self)


class StatsRegistry:
    """Holds every ``VariantStats`` by (name, version); retired ones are kept, bounded."""

    MAX_RETIRED = 16

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], VariantStats] = {}
        self._current: set[tuple[str, str]] = set()
        self.shadow = ShadowStats()
        self.feedback_received = 0
        self.feedback_unknown = 0
        self.feedback_invalid = 0
        self.incomplete_bodies = 0  # clients gone before the end of their body: dropped

    def for_variant(self, name: str, version: str) -> VariantStats:
        key = (name, version)
        stats = self._by_key.get(key)
        if stats is None:
            stats = self._by_key[key] = VariantStats(name, version)
        return stats

    def set_current(self, keys: set[tuple[str, str]]) -> None:
        """Mark which (name, version) pairs the live table uses; drop the oldest retired."""
        self._current = set(keys)
        retired = [k for k in self._by_key if k not in self._current]
        for key in retired[: max(0, len(retired) - self.MAX_RETIRED)]:
            del self._by_key[key]

    def current(self) -> list[VariantStats]:
        return [s for k, s in self._by_key.items() if k in self._current]

    def retired(self) -> list[VariantStats]:
        return [s for k, s in self._by_key.items() if k not in self._current]

    def all(self) -> list[VariantStats]:
        return list(self._by_key.values())
