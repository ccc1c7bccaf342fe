"""Analysis of a candidate from cumulative router counters.

Every `interval` the reconciler compares the router's counters with the snapshot kept
in `status.analysisCheckpoint` and judges the difference against the SLOs: p99
latency (from histogram bucket differences, linearly interpolated inside the bucket
as Prometheus' `histogram_quantile` does), error rate, shadow agreement, drift score.
A counter that went down means the router restarted: the window is dropped and a new
checkpoint taken, never a verdict from nonsense differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pilotage.api.modeldeployment import Analysis, AnalysisResult
from pilotage.control.common import format_time
from pilotage.control.types import RouterStats, VariantStats


@dataclass(frozen=True)
class Measurement:
    requests: int
    errors: int
    p99_ms: float | None
    error_rate: float | None
    agreement: float | None
    comparisons: int


def find_variant(stats: RouterStats, role: str, version: str) -> VariantStats | None:
    return next((v for v in stats.variants if v.name == role and v.version == version), None)


def snapshot(stats: RouterStats, role: str, version: str, now: datetime) -> dict[str, Any]:
    """The counters a later analysis is measured from (stored in status; JSON-ready)."""
    variant = find_variant(stats, role, version)
    shadow = stats.shadow
    return {
        "version": version,
        "variant": role,
        "time": format_time(now),
        "requests": variant.requests if variant else 0,
        "errors": variant.errors if variant else 0,
        "latency": list(variant.latency_counts) if variant else [],
        "shadow": {
            "agree": shadow.agree,
            "disagree": shadow.disagree,
            "error": shadow.error,
            "dropped": shadow.dropped,
        },
    }


def quantile_ms(bounds: tuple[float, ...], counts: list[int], q: float) -> float | None:
    """The q-quantile in milliseconds of a histogram (bucket counts, overflow last)."""
    total = sum(counts)
    if total <= 0 or not bounds:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if i >= len(bounds):
                return bounds[-1] * 1000.0  # beyond the last bound: its value is a lower bound
            lower = bounds[i - 1] if i > 0 else 0.0
            upper = bounds[i]
            return (lower + (upper - lower) * (rank - seen) / count) * 1000.0
        seen += count
    return bounds[-1] * 1000.0


def measure(
    before: dict[str, Any], stats: RouterStats, role: str, version: str
) -> Measurement | None:
    """What happened since `before`; None when the router restarted in between."""
    variant = find_variant(stats, role, version)
    requests = (variant.requests if variant else 0) - int(before.get("requests", 0))
    errors = (variant.errors if variant else 0) - int(before.get("errors", 0))
    old_latency = [int(c) for c in before.get("latency", [])]
    new_latency = list(variant.latency_counts) if variant else []
    if old_latency and len(old_latency) != len(new_latency):
        return None
    latency = [n - (old_latency[i] if old_latency else 0) for i, n in enumerate(new_latency)]
    old_shadow = before.get("shadow", {})
    agree = stats.shadow.agree - int(old_shadow.get("agree", 0))
    disagree = stats.shadow.disagree - int(old_shadow.get("disagree", 0))
    failed = stats.shadow.error - int(old_shadow.get("error", 0))
    if min(requests, errors, agree, disagree, failed, *latency, 0) < 0:
        return None
    compared = agree + disagree
    return Measurement(
        requests=requests,
        errors=errors,
        p99_ms=quantile_ms(variant.latency_bounds, latency, 0.99) if variant else None,
        error_rate=errors / requests if requests else None,
        agreement=agree / compared if compared else None,
        comparisons=compared + failed,
    )


def judge(
    measured: Measurement,
    spec: Analysis,
    *,
    shadow_mode: bool,
    drift_score: float | None,
    failures_before: int,
    now: datetime,
    unavailable: str | None = None,
) -> AnalysisResult:
    """Verdict of one interval: Inconclusive below minRequests, Fail on any SLO breach.

    ``unavailable`` (why the candidate's server cannot start) fails the interval whatever
    was measured: no request can reach a server that does not run.
    """
    volume = measured.requests if not shadow_mode else max(measured.requests, measured.comparisons)
    result = AnalysisResult(
        time=format_time(now),
        requests=volume,
        p99_ms=None if measured.p99_ms is None else round(measured.p99_ms, 3),
        error_rate=measured.error_rate,
        agreement=measured.agreement,
        drift_score=drift_score,
        verdict="Inconclusive",
        failures=failures_before,
    )
    if unavailable:
        result.verdict = "Fail"
        result.failures = failures_before + 1
        result.message = unavailable
        return result
    if volume < spec.min_requests:
        result.message = f"{volume} request(s) < minRequests {spec.min_requests}: no verdict"
        return result
    breaches = []
    if spec.latency and measured.p99_ms is not None and measured.p99_ms > spec.latency.p99_ms:
        breaches.append(f"p99 latency {measured.p99_ms:.1f}ms > SLO {spec.latency.p99_ms:g}ms")
    if (
        spec.error_rate
        and measured.error_rate is not None
        and measured.error_rate > spec.error_rate.max
    ):
        breaches.append(f"error rate {measured.error_rate:.3f} > SLO {spec.error_rate.max:g}")
    agreement = measured.agreement
    if (
        shadow_mode
        and spec.shadow
        and agreement is not None
        and agreement < spec.shadow.min_agreement
    ):
        breaches.append(f"shadow agreement {agreement:.3f} < SLO {spec.shadow.min_agreement:g}")
    if spec.drift and drift_score is not None and drift_score > spec.drift.max_score:
        breaches.append(f"drift score {drift_score:.3f} > SLO {spec.drift.max_score:g}")
    if breaches:
        result.verdict = "Fail"
        result.failures = failures_before + 1
        result.message = "; ".join(breaches)
    else:
        result.verdict = "Pass"
        result.failures = 0
        result.message = "all SLOs met"
    return result


def has_slos(spec: Analysis, *, shadow_mode: bool) -> bool:
    return bool(spec.latency or spec.error_rate or spec.drift or (shadow_mode and spec.shadow))
