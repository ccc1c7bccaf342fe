"""The router's stats document (`GET /admin/stats` on its admin port).

The router produces it from its live counters (``pilotage.router.stats``,
``pilotage.router.state``); the shells parse it into ``RouterStats`` for the
reconcilers. Both go through this module, the one definition of its fields.

Every counter is cumulative since the router started (like Prometheus counters); the
control plane takes differences between two reads. No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# ---------------------------------------------------------------------------
# The parsed view the reconcilers read.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackStats:
    """Cumulative live-quality counters from feedback (`POST /v1/feedback` on the router)."""

    labelled: int = 0
    correct: int = 0
    valued: int = 0
    abs_error_sum: float = 0.0


@dataclass(frozen=True)
class VariantStats:
    """Cumulative router counters of one (variant, version), as the router reports them."""

    name: str
    version: str
    requests: int
    errors: int
    latency_bounds: tuple[float, ...]
    """Upper bounds of the latency buckets, seconds."""
    latency_counts: tuple[int, ...]
    """Requests per bucket (not cumulative); one more entry than bounds (overflow)."""
    feedback: FeedbackStats = field(default_factory=FeedbackStats)
    in_flight: int = 0
    """Requests at the variant's replicas now."""
    busy_seconds: float = 0.0
    """Integral of `in_flight` over time, cumulative (the autoscaler's concurrency)."""
    held: int = 0
    """Requests waiting now for the variant at zero replicas."""


@dataclass(frozen=True)
class ShadowStats:
    agree: int = 0
    disagree: int = 0
    error: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class LogCounters:
    """The router's inference-log counters (`inferenceLog` in its stats)."""

    written: int = 0
    labels: int = 0
    dropped: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class RouterStats:
    variants: tuple[VariantStats, ...] = ()
    shadow: ShadowStats = field(default_factory=ShadowStats)
    revision: str | None = None
    """The routing-table revision the router is using (None when unknown)."""
    sequence: int | None = None
    """The `sequence` of the table it is using (None: unnumbered, or unknown); with
    several router pods, the highest."""
    reload_errors: int = 0
    """Routing files the router refused since it started (`reloadErrors`)."""
    last_reload_error: str | None = None
    """Why it refused the last one (`lastReloadError`); it stays after a later success."""
    logging: LogCounters | None = None
    """Inference-log counters; None when the router has never logged."""
    uptime_seconds: float | None = None
    """The router's own clock when it made the document (`uptimeSeconds`): the time
    base of its counters, for rates that the read's delay must not skew."""


# ---------------------------------------------------------------------------
# Producing the document: the router's counters, read through these shapes.
# ---------------------------------------------------------------------------


class FeedbackCounters(Protocol):
    labelled: int
    correct: int
    valued: int
    abs_error_sum: float


class ForcedCounters(Protocol):
    requests: int
    codes: dict[int, int]


class VariantCounters(Protocol):
    version: str
    requests: int
    errors: int
    retried_on_stable: int
    codes: dict[int, int]
    latency_counts: list[int]
    latency_sum: float
    in_flight: int

    @property
    def feedback(self) -> FeedbackCounters: ...

    @property
    def forced(self) -> ForcedCounters: ...

    def busy_seconds(self) -> float: ...


class ShadowCounters(Protocol):
    mirrored: int
    dropped: int
    agree: int
    disagree: int
    error: int
    abs_diff_sum: float
    numeric_compared: int


def _codes(codes: Mapping[int, int]) -> dict[str, int]:
    return {str(code): n for code, n in sorted(codes.items())}


def feedback_document(c: FeedbackCounters) -> dict[str, Any]:
    return {
        "labelled": c.labelled,
        "correct": c.correct,
        "accuracy": c.correct / c.labelled if c.labelled else None,
        "valued": c.valued,
        "absErrorSum": c.abs_error_sum,
        "mae": c.abs_error_sum / c.valued if c.valued else None,
    }


def forced_document(c: ForcedCounters) -> dict[str, Any]:
    return {"requests": c.requests, "codes": _codes(c.codes)}


def variant_document(c: VariantCounters, latency_bounds: Sequence[float]) -> dict[str, Any]:
    return {
        "version": c.version,
        "requests": c.requests,
        "errors": c.errors,
        "retriedOnStable": c.retried_on_stable,
        "codes": _codes(c.codes),
        "latency": {
            "le": list(latency_bounds),
            "counts": list(c.latency_counts),
            "sum": c.latency_sum,
            "count": c.requests,
        },
        "feedback": feedback_document(c.feedback),
        "forced": forced_document(c.forced),
        "inFlight": c.in_flight,
        "busySeconds": c.busy_seconds(),
    }


def shadow_document(c: ShadowCounters) -> dict[str, Any]:
    compared = c.agree + c.disagree
    return {
        "mirrored": c.mirrored,
        "dropped": c.dropped,
        "comparisons": {"agree": c.agree, "disagree": c.disagree, "error": c.error},
        "agreement": c.agree / compared if compared else None,
        "numericCompared": c.numeric_compared,
        "absDiffSum": c.abs_diff_sum,
    }


def stats_document(
    *,
    deployment: str,
    mode: str,
    generation: int,
    revision: str | None,
    sequence: int | None,
    outdated_tables: int,
    source: str,
    loaded_at: float,
    reload_errors: int,
    last_reload_error: str | None,
    uptime_seconds: float,
    incomplete_bodies: int,
    weights: Mapping[str, int],
    sticky_header: str | None,
    variants: Mapping[str, Mapping[str, Any]],
    retired: Iterable[tuple[str, Mapping[str, Any]]],
    shadow: Mapping[str, Any] | None,
    shadow_totals: Mapping[str, Any],
    inference_log: Mapping[str, Any] | None,
    feedback: Mapping[str, Any],
) -> dict[str, Any]:
    """The whole document. ``variants``: name → ``variant_document`` plus the variant's
    ``weight`` and ``url``; ``retired``: (name, ``variant_document``) of variants the
    table no longer names; ``shadow``: the shadow settings and queue (None without a
    shadow), to which the ``shadow_totals`` are added; ``inference_log``: the inference
    log's counters (None when the router has never logged)."""
    return {
        "deployment": deployment,
        "mode": mode,
        "generation": generation,
        "revision": revision,
        "sequence": sequence,
        "outdatedTables": outdated_tables,
        "source": source,
        "loadedAt": loaded_at,
        "reloadErrors": reload_errors,
        "lastReloadError": last_reload_error,
        "uptimeSeconds": uptime_seconds,
        "incompleteBodies": incomplete_bodies,
        "weights": dict(weights),
        "stickyHeader": sticky_header,
        "variants": {name: dict(entry) for name, entry in variants.items()},
        "retired": [{"variant": name, **entry} for name, entry in retired],
        "shadow": None if shadow is None else {**shadow, **shadow_totals},
        "shadowTotals": dict(shadow_totals),
        "inferenceLog": None if inference_log is None else dict(inference_log),
        "feedback": dict(feedback),
    }


# ---------------------------------------------------------------------------
# Parsing the document (lenient: a field missing or of the wrong type reads as zero).
# ---------------------------------------------------------------------------


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _feedback(doc: Mapping[str, Any]) -> FeedbackStats:
    return FeedbackStats(
        labelled=_int(doc.get("labelled")),
        correct=_int(doc.get("correct")),
        valued=_int(doc.get("valued")),
        abs_error_sum=float(doc.get("absErrorSum") or 0.0),
    )


def _variant(name: str, doc: Mapping[str, Any]) -> VariantStats:
    latency = doc.get("latency") or {}
    return VariantStats(
        name=name,
        version=str(doc.get("version", "")),
        requests=_int(doc.get("requests")),
        errors=_int(doc.get("errors")),
        latency_bounds=tuple(float(b) for b in latency.get("le", [])),
        latency_counts=tuple(_int(c) for c in latency.get("counts", [])),
        feedback=_feedback(doc.get("feedback") or {}),
        in_flight=_int(doc.get("inFlight")),
        busy_seconds=_float(doc.get("busySeconds")),
        held=_int(doc.get("held")),
    )


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


def parse_router_stats(doc: Mapping[str, Any]) -> RouterStats:
    """The router's `GET /admin/stats` document as `RouterStats` (current and retired
    variants; shadow totals; the routing-table revision in use; refused reloads)."""
    variants = [_variant(name, entry) for name, entry in (doc.get("variants") or {}).items()]
    variants += [_variant(str(e.get("variant", "")), e) for e in doc.get("retired") or []]
    totals = doc.get("shadowTotals") or {}
    comparisons = totals.get("comparisons") or {}
    revision = doc.get("revision")
    sequence = doc.get("sequence")
    reload_error = doc.get("lastReloadError")
    return RouterStats(
        variants=tuple(variants),
        shadow=ShadowStats(
            agree=_int(comparisons.get("agree")),
            disagree=_int(comparisons.get("disagree")),
            error=_int(comparisons.get("error")),
            dropped=_int(totals.get("dropped")),
        ),
        revision=str(revision) if revision is not None else None,
        sequence=_int(sequence) if sequence is not None else None,
        reload_errors=_int(doc.get("reloadErrors")),
        uptime_seconds=_float(doc.get("uptimeSeconds")) if "uptimeSeconds" in doc else None,
        last_reload_error=str(reload_error) if reload_error else None,
        logging=_log_counters(doc.get("inferenceLog")),
    )


def _log_counters(doc: Any) -> LogCounters | None:
    if not isinstance(doc, Mapping):
        return None
    error = doc.get("lastError")
    return LogCounters(
        written=_int(doc.get("written")),
        labels=_int(doc.get("labelsWritten")),
        dropped=_int(doc.get("dropped")),
        last_error=str(error) if error else None,
    )
