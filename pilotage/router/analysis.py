"""Pure helpers for analysing router stats between two reads (no I/O; for the control plane).

Stats counters are cumulative since the router started. ``window(before, after)`` gives
what happened between two reads of the same router: per variant requests, error
rate, latency quantiles, live accuracy / MAE, and the shadow comparison counts. A
variant whose version changed, or a router that restarted (counters went down), is
measured from zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def latency_quantile(le: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, interpolated within its bucket.

    ``counts`` has one entry per bound in ``le`` plus a last overflow bucket; a quantile
    that falls in the overflow is ``math.inf``. None when there are no samples.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(le):
                return math.inf
            lower = le[i - 1] if i > 0 else 0.0
            return lower + (le[i] - lower) * (rank - seen) / count
        seen += count
    return math.inf


@dataclass(frozen=True)
class VariantWindow:
    variant: str
    version: str
    requests: int
    errors: int
    error_rate: float | None
    p50_seconds: float | None
    p99_seconds: float | None
    labelled: int
    accuracy: float | None
    valued: int
    mae: float | None


@dataclass(frozen=True)
class ShadowWindow:
    agree: int
    disagree: int
    error: int
    dropped: int
    agreement: float | None


def _variant_window(
    name: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> VariantWindow:
    if (
        before is None
        or before.get("version") != after.get("version")
        or before["requests"] > after["requests"]
    ):
        before = None
    b_counts = before["latency"]["counts"] if before else [0] * len(after["latency"]["counts"])
    counts = [a - b for a, b in zip(after["latency"]["counts"], b_counts, strict=True)]
    le = after["latency"]["le"]
    requests = after["requests"] - (before["requests"] if before else 0)
    errors = after["errors"] - (before["errors"] if before else 0)
    fb_a = after["feedback"]
    fb_b = (
        before["feedback"]
        if before
        else {"labelled": 0, "correct": 0, "valued": 0, "absErrorSum": 0.0}
    )
    labelled = fb_a["labelled"] - fb_b["labelled"]
    correct = fb_a["correct"] - fb_b["correct"]
    valued = fb_a["valued"] - fb_b["valued"]
    abs_error = fb_a["absErrorSum"] - fb_b["absErrorSum"]
    return VariantWindow(
        variant=name,
        version=str(after.get("version")),
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        p50_seconds=latency_quantile(le, counts, 0.5),
        p99_seconds=latency_quantile(le, counts, 0.99),
        labelled=labelled,
        accuracy=correct / labelled if labelled else None,
        valued=valued,
        mae=abs_error / valued if valued else None,
    )


def window(
    before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> tuple[dict[str, VariantWindow], ShadowWindow]:
    """Per-variant and shadow figures between two stats reads (``before`` may be None)."""
    restarted = before is None or before.get("uptimeSeconds", 0) > after.get("uptimeSeconds", 0)
    prior = None if restarted else before
    variants = {
        name: _variant_window(name, prior["variants"].get(name) if prior else None, entry)
        for name, entry in after["variants"].items()
    }
    a = after["shadowTotals"]
    zero: dict[str, Any] = {"comparisons": {"agree": 0, "disagree": 0, "error": 0}, "dropped": 0}
    b: Mapping[str, Any] = prior["shadowTotals"] if prior else zero
    agree = a["comparisons"]["agree"] - b["comparisons"]["agree"]
    disagree = a["comparisons"]["disagree"] - b["comparisons"]["disagree"]
    shadow = ShadowWindow(
        agree=agree,
        disagree=disagree,
        error=a["comparisons"]["error"] - b["comparisons"]["error"],
        dropped=a["dropped"] - b["dropped"],
        agreement=agree / (agree + disagree) if agree + disagree else None,
    )
    return variants, shadow
