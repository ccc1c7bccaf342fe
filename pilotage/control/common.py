"""Small helpers every reconciler uses: times, names, manifests, annotations, conditions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pilotage.api.common import Condition
from pilotage.api.conditions import summarize
from pilotage.api.resource import Resource

ANNOTATION_PROMOTE = "pilotage.dev/promote"
FULL_PROMOTION = "full"
ANNOTATION_ABORT = "pilotage.dev/abort"
ANNOTATION_RETRY = "pilotage.dev/retry"
ANNOTATION_RETRAIN = "pilotage.dev/retrain"
ANNOTATION_REFRESH = "pilotage.dev/refresh"
LABEL_MONITOR = "pilotage.dev/monitor"
LABEL_TRIGGER = "pilotage.dev/trigger"

RUN_POLL_SECONDS = 2.0
"""How soon to look again while a run is in progress or a dependency is not ready."""
STEADY_POLL_SECONDS = 30.0
"""How soon to look again when nothing is in progress (catches missed watch events)."""
MAX_NAME = 63


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC, with milliseconds only when there are any."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """The datetime in an RFC 3339 status field; None when absent or unreadable."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_name(*parts: str, limit: int = MAX_NAME) -> str:
    """Join parts with '-' into a name of at most ``limit`` characters.

    Too long a name keeps its beginning and ends with a hash of the whole, so distinct
    inputs stay distinct and the result is the same every time (no randomness).
    """
    full = "-".join(p for p in parts if p)
    if len(full) <= limit:
        return full
    digest = short_hash(full)
    head = full[: limit - len(digest) - 1].rstrip("-.")
    return f"{head}-{digest}"


def manifest(resource: Resource) -> dict[str, Any]:
    """The resource as a manifest without status (what a trainer run reads)."""
    meta: dict[str, Any] = {"name": resource.metadata.name}
    if resource.metadata.namespace:
        meta["namespace"] = resource.metadata.namespace
    if resource.metadata.labels:
        meta["labels"] = dict(resource.metadata.labels)
    spec = getattr(resource, "spec")  # noqa: B009 - every Pilotage resource has a spec
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": meta,
        "spec": spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }


def namespace_of(resource: Resource) -> str:
    return resource.metadata.namespace or "default"


def pending_action(resource: Resource, annotation: str, handled: dict[str, str]) -> str | None:
    """The annotation's value when it asks for something not yet handled, else None."""
    value = resource.metadata.annotations.get(annotation)
    if value is None or value == "" or handled.get(annotation) == value:
        return None
    return value


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def ready_reason(conditions: list[Condition]) -> str:
    """The reason of the Ready condition ('' when absent)."""
    ready = next((c for c in conditions if c.type == "Ready"), None)
    return ready.reason if ready else ""


def reconciled_conditions(
    conditions: list[Condition],
    *,
    ready: bool | None,
    reason: str,
    message: str,
    stalled: bool,
    generation: int,
    now: str,
) -> list[Condition]:
    """Ready and Stalled as given, and Reconciling while the resource is neither Ready nor
    Stalled: how every reconciler ends its call."""
    return summarize(
        conditions,
        ready=ready,
        reason=reason,
        message=message,
        reconciling=ready is not True and not stalled,
        stalled=stalled,
        generation=generation,
        now=now,
    )


@dataclass(frozen=True)
class Readiness:
    """How a reconcile call ends: Ready (None: Unknown), its reason and message, and
    whether the resource is stalled (it will not get better without a change)."""

    ready: bool | None
    reason: str
    message: str
    stalled: bool = False

    def conditions(self, conditions: list[Condition], generation: int, now: str) -> list[Condition]:
        return reconciled_conditions(
            conditions,
            ready=self.ready,
            reason=self.reason,
            message=self.message,
            stalled=self.stalled,
            generation=generation,
            now=now,
        )


def is_full_promotion(value: str) -> bool:
    """`pilotage.dev/promote: full` or `full:<token>` promotes to 100 % at once; the token
    makes each request a new value, so two full promotions in a row are two requests.
    Any other value (`step`, `step:<token>`, a timestamp) is one step."""
    return value == FULL_PROMOTION or value.startswith(FULL_PROMOTION + ":")


RESTART_BACKOFF_BASE_S = 1.0
RESTART_BACKOFF_CAP_S = 60.0
CRASH_LOOP_CRASHES = 3
"""A server that has exited this many times in a row without becoming ready is failing
(crash-looping); Kubernetes says CrashLoopBackOff after a similar count."""


def restart_backoff(crashes: int) -> float:
    """Seconds to wait before starting a server again after its ``crashes``-th exit in a row
    without becoming ready: 1, 2, 4, … up to 60 (as the kubelet doubles from 10 s to 5 min,
    shorter because a local restart is cheap)."""
    if crashes <= 0:
        return 0.0
    return float(min(RESTART_BACKOFF_BASE_S * 2 ** min(crashes - 1, 30), RESTART_BACKOFF_CAP_S))
