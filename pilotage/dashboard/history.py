"""Bounded in-memory time series for the dashboard's charts.

Fed only from what the control plane already reads — resource statuses and, on the
embedded runtime, the router stats and drift counters its control loop fetched for a
reconcile (``Runtime.observers``) — so the dashboard adds nothing to the request path.
Every series is a ring (``deque(maxlen=...)``): memory stays bounded however long
`pilotage up` runs.

Router counters are cumulative; a sample holds the rates and latency quantiles of the
interval since the previous sample of the same (variant, version), computed as the
analysis does (bucket differences, `quantile_ms`). A counter that went down means the
router restarted: that interval is skipped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pilotage.control.analysis import quantile_ms
from pilotage.control.types import RouterStats, ServerCounters, VariantStats

MAX_POINTS = 600
"""Samples kept per series (10 minutes at one sample a second)."""
MIN_SPACING_S = 0.9
"""Samples closer than this to the previous one are merged into it (the loop ticks fast)."""
COUNTER_WINDOW_S = 60.0
"""The live histogram of a feature covers the rows counted over about this long."""

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class _RouterPoint:
    time: float
    counters: dict[tuple[str, str], VariantStats]


@dataclass
class _Series:
    points: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_POINTS))

    def add(self, point: dict[str, Any]) -> None:
        if self.points and point["t"] - self.points[-1]["t"] < MIN_SPACING_S:
            self.points[-1] = {**self.points[-1], **point, "t": self.points[-1]["t"]}
        else:
            self.points.append(point)


def _variant_rates(before: VariantStats, after: VariantStats, seconds: float) -> dict[str, Any]:
    requests = after.requests - before.requests
    errors = after.errors - before.errors
    if len(before.latency_counts) == len(after.latency_counts):
        latency = [a - b for a, b in zip(after.latency_counts, before.latency_counts, strict=True)]
    else:
        latency = []
    if min(requests, errors, *latency, 0) < 0 or seconds <= 0:
        return {}
    p50 = quantile_ms(after.latency_bounds, latency, 0.5) if latency else None
    p99 = quantile_ms(after.latency_bounds, latency, 0.99) if latency else None
    return {
        "version": after.version,
        "rps": requests / seconds,
        "errorRate": errors / requests if requests else None,
        "p50Ms": p50,
        "p99Ms": p99,
        "requests": requests,
    }


class History:
    """Time series per resource; thread-safe (the control loop writes, the web app reads)."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self._lock = threading.Lock()
        self._status: dict[Key, _Series] = {}
        self._router: dict[Key, _Series] = {}
        self._last_router: dict[Key, _RouterPoint] = {}
        self._counters: dict[Key, deque[tuple[float, dict[str, dict[str, int]]]]] = {}

    def _series(self, table: dict[Key, _Series], key: Key) -> _Series:
        series = table.get(key)
        if series is None:
            series = table[key] = _Series(deque(maxlen=self.max_points))
        return series

    # -- writers -----------------------------------------------------------------------

    def record_status(self, doc: dict[str, Any], now: float) -> None:
        """One sample of what a status says (weights, drift scores, last analysis)."""
        kind = str(doc.get("kind", ""))
        meta = doc.get("metadata") or {}
        key = (kind, str(meta.get("namespace") or "default"), str(meta.get("name", "")))
        status = doc.get("status") or {}
        point: dict[str, Any] = {"t": now}
        if kind == "ModelDeployment":
            point["traffic"] = dict(status.get("traffic") or {})
            analysis = status.get("lastAnalysis") or {}
            if analysis:
                point["analysis"] = {
                    k: analysis.get(k)
                    for k in ("time", "p99Ms", "errorRate", "agreement", "verdict")
                }
        elif kind == "DriftMonitor":
            features = status.get("features") or []
            if not status.get("lastCheckTime"):
                return
            point["check"] = status.get("lastCheckTime")
            point["scores"] = {f["name"]: f.get("score") for f in features if "name" in f}
            point["thresholds"] = {f["name"]: f.get("threshold") for f in features if "name" in f}
            point["driftScore"] = status.get("driftScore")
        else:
            return
        with self._lock:
            self._series(self._status, key).add(point)

    def record_router(
        self, namespace: str, deployment: str, stats: RouterStats, now: float
    ) -> None:
        """Per-variant request rate, error rate and p50/p99 since the previous reading."""
        key = ("ModelDeployment", namespace, deployment)
        counters = {(v.name, v.version): v for v in stats.variants}
        with self._lock:
            last = self._last_router.get(key)
            if last is not None and now - last.time < MIN_SPACING_S:
                return
            self._last_router[key] = _RouterPoint(now, counters)
            if last is None:
                return
            variants: dict[str, Any] = {}
            for (name, version), after in counters.items():
                before = last.counters.get((name, version))
                rates = _variant_rates(before, after, now - last.time) if before else {}
                # a role can hold two versions (a retired one): keep the one that served
                if rates and (name not in variants or rates["requests"]):
                    variants[name] = rates
            self._series(self._router, key).add({"t": now, "variants": variants})

    def record_counters(
        self, namespace: str, monitor: str, counters: tuple[ServerCounters, ...], now: float
    ) -> None:
        """The stable version's drift counters, summed over replicas (live histograms)."""
        total: dict[str, dict[str, int]] = {}
        for replica in counters:
            for feature, bins in replica.features.items():
                into = total.setdefault(feature, {})
                for label, count in bins.items():
                    into[label] = into.get(label, 0) + int(count)
        key = ("DriftMonitor", namespace, monitor)
        with self._lock:
            ring = self._counters.setdefault(key, deque(maxlen=self.max_points))
            if ring and now - ring[-1][0] < MIN_SPACING_S:
                return
            ring.append((now, total))

    def forget(self, key: Key) -> None:
        with self._lock:
            self._status.pop(key, None)
            self._router.pop(key, None)
            self._last_router.pop(key, None)
            self._counters.pop(key, None)

    # -- readers -------------------------------------------------------------------------

    def status_points(self, key: Key) -> list[dict[str, Any]]:
        with self._lock:
            series = self._status.get(key)
            return list(series.points) if series else []

    def router_points(self, key: Key) -> list[dict[str, Any]]:
        with self._lock:
            series = self._router.get(key)
            return list(series.points) if series else []

    def live_counts(self, key: Key, now: float) -> dict[str, dict[str, int]] | None:
        """Rows per feature and bin over the last ``COUNTER_WINDOW_S`` (None: no counters)."""
        with self._lock:
            ring = list(self._counters.get(key) or ())
        if not ring:
            return None
        latest_t, latest = ring[-1]
        base: dict[str, dict[str, int]] = {}
        for t, snapshot in ring:
            if latest_t - t <= COUNTER_WINDOW_S:
                base = snapshot
                break
        out: dict[str, dict[str, int]] = {}
        for feature, bins in latest.items():
            earlier = base.get(feature, {}) if base is not latest else {}
            diff = {label: n - earlier.get(label, 0) for label, n in bins.items()}
            if any(v < 0 for v in diff.values()):  # a server restarted: its counts began again
                diff = dict(bins)
            out[feature] = diff
        return out


def runtime_observer(history: History) -> Any:
    """A `Runtime.observers` entry: keeps the router stats and drift counters the control
    loop just fetched for a reconcile (no extra request to any server or router)."""
    from pilotage.control.types import DriftMonitorObservation, ModelDeploymentObservation

    def observe(res: Any, observation: Any) -> None:
        namespace = res.metadata.namespace or "default"
        now = time.time()
        if isinstance(observation, ModelDeploymentObservation):
            router = observation.router
            if router is not None and router.stats is not None:
                history.record_router(namespace, res.name, router.stats, now)
        elif isinstance(observation, DriftMonitorObservation) and observation.counters:
            history.record_counters(namespace, res.name, observation.counters, now)

    return observe
