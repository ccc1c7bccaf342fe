"""Live accuracy: remember what recent requests were answered, score ground truth against it.

``RecentAnswers`` is a bounded map request id -> (variant stats, raw answer body); the
first answer remembered under an id keeps it until it is scored or evicted:
the oldest entries are evicted beyond ``capacity`` entries or ``max_bytes`` of kept
bodies (answers over ``MAX_KEPT_BODY`` are not kept). Bodies are kept raw and parsed only
when feedback arrives, so answering a request costs no JSON work.

Feedback document (``POST /v1/feedback``)::

    {"feedback": [{"requestId": "abc", "label": "setosa"},   # classifiers
                  {"requestId": "def", "value": 3.2}]}        # regression

A ``label``/``value`` may be a list when the request had several rows. An id is
scored once (its entry is removed); unknown or expired ids are counted, not errors.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from pilotage.router.predictions import extract_predictions, same_class
from pilotage.router.stats import StatsRegistry, VariantStats

MAX_KEPT_BODY = 64 * 1024
MAX_KEPT_BYTES = 32 * 1024 * 1024
MAX_FEEDBACK_ITEMS = 10_000


class FeedbackError(ValueError):
    """A feedback document that cannot be used; the message names the item at fault."""


class RecentAnswers:
    """Request id -> (variant stats, raw answer), oldest evicted beyond a count or byte budget."""

    __slots__ = ("_bytes", "_entries", "capacity", "max_bytes")

    def __init__(self, capacity: int = 10_000, max_bytes: int = MAX_KEPT_BYTES):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[VariantStats, bytes]] = OrderedDict()
        self._bytes = 0

    def remember(self, request_id: bytes, stats: VariantStats, body: bytes) -> bool:
        """Keep the answer for its feedback; False when it was not kept."""
        if len(body) > MAX_KEPT_BODY:
            return False
        entries = self._entries
        if request_id in entries:
            # a client-chosen id that names an answer still waiting for its truth: the
            # first answer keeps it (a later request must not take over another client's id)
            return False
        entries[request_id] = (stats, body)
        self._bytes += len(body)
        while len(entries) > self.capacity or self._bytes > self.max_bytes:
            _, (_, evicted) = entries.popitem(last=False)
            self._bytes -= len(evicted)
        return True

    def take(self, request_id: bytes) -> tuple[VariantStats, bytes] | None:
        entry = self._entries.pop(request_id, None)
        if entry is not None:
            self._bytes -= len(entry[1])
        return entry

    @property
    def kept_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


def _truths(item: dict[str, Any], index: int) -> tuple[str, list[Any]]:
    has_label = "label" in item
    has_value = "value" in item
    if has_label == has_value:
        raise FeedbackError(
            f"feedback[{index}]: give exactly one of label (classifier) or value (regression)"
        )
    kind = "label" if has_label else "value"
    truth = item[kind]
    values = truth if isinstance(truth, list) else [truth]
    for v in values:
        if kind == "value" and (
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
        ):
            raise FeedbackError(f"feedback[{index}].value: must be a finite number, got {v!r}")
        if kind == "label" and not isinstance(v, str | int | float | bool):
            raise FeedbackError(f"feedback[{index}].label: must be a class label, got {v!r}")
    return kind, values


def apply_feedback(doc: Any, recent: RecentAnswers, registry: StatsRegistry) -> dict[str, Any]:
    """Validate the whole document first, then score each item; returns the outcome counts."""
    if not isinstance(doc, dict) or not isinstance(doc.get("feedback"), list):
        raise FeedbackError(
            'body: expected {"feedback": [{"requestId": ..., "label"|"value": ...}, ...]}'
        )
    items = doc["feedback"]
    if len(items) > MAX_FEEDBACK_ITEMS:
        raise FeedbackError(
            f"feedback: at most {MAX_FEEDBACK_ITEMS} items per call, got {len(items)}"
        )
    parsed: list[tuple[bytes, str, list[Any]]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise FeedbackError(
                f"feedback[{i}]: must be an object with requestId and label or value"
            )
        rid = item.get("requestId")
        if not isinstance(rid, str) or not rid:
            raise FeedbackError(f"feedback[{i}].requestId: required string, got {rid!r}")
        kind, values = _truths(item, i)
        parsed.append((rid.encode("latin-1", "replace"), kind, values))

    recorded = unknown = mismatched = 0
    problems: list[str] = []
    for rid, kind, values in parsed:
        registry.feedback_received += 1
        found = recent.take(rid)
        if found is None:
            unknown += 1
            registry.feedback_unknown += 1
            continue
        stats, body = found
        predictions = extract_predictions(body)
        if predictions is None or len(predictions) != len(values):
            mismatched += 1
            registry.feedback_invalid += 1
            if len(problems) < 20:
                got = (
                    "no readable prediction"
                    if predictions is None
                    else f"{len(predictions)} prediction(s)"
                )
                problems.append(f"{rid.decode('latin-1')}: {len(values)} truth value(s) but {got}")
            continue
        fb = stats.feedback
        for predicted, truth in zip(predictions, values, strict=True):
            if kind == "label":
                fb.labelled += 1
                fb.correct += same_class(predicted, truth)
            else:
                fb.valued += 1
                try:
                    fb.abs_error_sum += abs(float(predicted) - float(truth))
                except (TypeError, ValueError):
                    fb.abs_error_sum += math.inf
        recorded += 1
    return {
        "recorded": recorded,
        "unknown": unknown,
        "mismatched": mismatched,
        "problems": problems,
    }
