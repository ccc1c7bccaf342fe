"""One reconcile of one resource: read it fresh, observe, call the pure reconciler, act.

The same `pilotage.control` reconcilers run here and in the embedded runtime. Order:
actions first (each idempotent), then the status diff (only declared fields, written
through the status subresource), then Events. When an action fails, the status is not
written, so the next reconcile makes the same decision again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, get_args

from pilotage.api import KINDS, ManifestError, parse_resource
from pilotage.api.common import Condition
from pilotage.api.conditions import summarize
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.api.resource import Resource
from pilotage.control.common import format_time
from pilotage.control.platform import Observer, carry_out, reconcile
from pilotage.control.types import Event
from pilotage.operator import build
from pilotage.operator.kube import EVENTS, Kube, KubeError, Obj, Res
from pilotage.operator.patching import merge_diff
from pilotage.operator.platform import (
    DATASETS,
    DRIFTMONITORS,
    MODELDEPLOYMENTS,
    TRAININGJOBS,
    Addresses,
    KubernetesPlatform,
)
from pilotage.operator.settings import OperatorSettings

log = logging.getLogger("pilotage.operator")

ACTION_RETRY_SECONDS = 5.0
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Reconciles resources of the four kinds on one cluster; thread-safe per resource."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        clock: Clock = utc_now,
        addresses: Addresses | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.platform = KubernetesPlatform(kube, settings, addresses)
        self.observer = Observer(self.platform)
        self.clock = clock
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Conditions a Forbidden condition replaced, put back once the call is allowed.
        self._replaced: dict[tuple[str, str, str], Any] = {}
        self.kinds: dict[str, Res] = {
            "datasets": DATASETS,
            "trainingjobs": TRAININGJOBS,
            "modeldeployments": MODELDEPLOYMENTS,
            "driftmonitors": DRIFTMONITORS,
        }

    def _lock(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, plural: str, namespace: str, name: str) -> None:
        with self._locks_guard:
            self._locks.pop((plural, namespace, name), None)
        self._replaced.pop((plural, namespace, name), None)

    def reconcile(self, plural: str, namespace: str, name: str) -> float | None:
        """Reconcile once; the seconds until the next reconcile (None: only on change)."""
        res = self.kinds[plural]
        with self._lock((plural, namespace, name)):
            body = self.kube.get(res, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            now = self.clock()
            try:
                resource = self._with_analysis_defaults(parse_resource(body))
            except ManifestError as exc:
                self._invalid(res, body, str(exc), now)
                return None
            key = (plural, namespace, name)
            try:
                result = reconcile(resource, self.observer.observe(resource, now), now)
                for action in result.actions:
                    try:
                        carry_out(self.platform, body, action)
                    except KubeError as exc:
                        if exc.forbidden or exc.namespace_terminating:
                            raise
                        message = f"{type(action).__name__} failed: {exc}"
                        log.warning("%s/%s/%s: %s", plural, namespace, name, message)
                        self._event(body, Event("Warning", "ActionFailed", message), now)
                        return ACTION_RETRY_SECONDS
                self._write_status(res, body, self._permitted(key, result.status.dump()))
            except KubeError as exc:
                if exc.namespace_terminating:
                    log.debug("%s/%s/%s: namespace being deleted: %s", *key, exc)
                    return ACTION_RETRY_SECONDS
                if not exc.forbidden:
                    raise
                self._forbidden(key, res, body, exc, now)
                return ACTION_RETRY_SECONDS
            for event in result.events:
                self._event(body, event, now)
            return result.requeue_after

    # ---- defaults -----------------------------------------------------------------------

    def _with_analysis_defaults(self, resource: Resource) -> Resource:
        """A ModelDeployment with the operator's analysis defaults where its spec has none."""
        if not isinstance(resource, ModelDeployment):
            return resource
        md = resource
        analysis = md.spec.analysis
        update: dict[str, Any] = {}
        if self.settings.analysis_interval and "interval" not in analysis.model_fields_set:
            update["interval"] = self.settings.analysis_interval
        if (
            self.settings.analysis_min_requests is not None
            and "min_requests" not in analysis.model_fields_set
        ):
            update["min_requests"] = self.settings.analysis_min_requests
        if not update:
            return md
        spec = md.spec.model_copy(update={"analysis": analysis.model_copy(update=update)})
        return md.model_copy(update={"spec": spec})

    # ---- writes ------------------------------------------------------------------------

    def _write_status(self, res: Res, body: Obj, status: dict[str, Any]) -> None:
        diff = merge_diff(body.get("status") or {}, status)
        if diff:
            meta = body["metadata"]
            self.kube.patch(res, meta["namespace"], meta["name"], {"status": diff}, status=True)

    def _event(self, body: Obj, event: Event, now: datetime) -> None:
        try:
            self.kube.create(
                EVENTS,
                body["metadata"]["namespace"],
                build.build_event(body, event, format_time(now)),
            )
        except KubeError as exc:  # an Event is never worth failing a reconcile for
            if exc.namespace_terminating:
                log.debug("event %s not recorded: %s", event.reason, exc)
            else:
                log.warning("cannot record event %s: %s", event.reason, exc)

    def _forbidden(
        self, key: tuple[str, str, str], res: Res, body: Obj, exc: KubeError, now: datetime
    ) -> None:
        """An API call the operator's RBAC does not allow: Ready=False/Forbidden naming the
        call, one Warning Event, a log line. Retried; cleared once the call is allowed."""
        plural, namespace, name = key
        message = (
            f"the operator may not {exc.call()} (HTTP 403; grant it in the operator's "
            f"(Cluster)Role): {exc.message}"
        )[:1024]
        log.warning("%s/%s/%s: forbidden: %s", plural, namespace, name, message)
        status = dict(body.get("status") or {})
        old = _conditions(status)
        before = next((c for c in old if c.type == "Ready"), None)
        if before is not None and (before.reason, before.message) == ("Forbidden", message):
            return
        if before is None or before.reason != "Forbidden":
            self._replaced[key] = status.get("conditions")
        conditions = _stalled(old, "Forbidden", message, body, now)
        self._event(body, Event("Warning", "Forbidden", message), now)
        try:
            self._write_status(res, body, {**status, "conditions": [c.dump() for c in conditions]})
        except KubeError as write_error:  # e.g. the status subresource is the forbidden one
            log.warning("%s/%s/%s: cannot record it in status: %s", *key, write_error)

    def _permitted(self, key: tuple[str, str, str], status: dict[str, Any]) -> dict[str, Any]:
        """`status` as the reconciler left it, without a Forbidden condition it kept only
        because it did not recompute its conditions: the ones it replaced come back."""
        replaced = self._replaced.pop(key, None)
        conditions = status.get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None or ready.get("reason") != "Forbidden":
            return status
        if replaced:
            return {**status, "conditions": replaced}
        return {**status, "conditions": [c for c in conditions if c.get("reason") != "Forbidden"]}

    def _invalid(self, res: Res, body: Obj, message: str, now: datetime) -> None:
        """A spec the models reject: Ready=False/InvalidSpec, Stalled, naming the field."""
        status = dict(body.get("status") or {})
        generation = int(body["metadata"].get("generation") or 1)
        old = _conditions(status)
        conditions = _stalled(old, "InvalidSpec", message, body, now)
        new = {
            **status,
            "observedGeneration": generation,
            "conditions": [c.dump() for c in conditions],
        }
        if _declares_message(body.get("kind")):
            new["message"] = message[:1024]
        # The Ready condition, present in every kind's status, tells whether this problem
        # was already reported (a Dataset's status has no `message` to compare with).
        before = next((c for c in old if c.type == "Ready"), None)
        if before is None or (before.reason, before.message) != ("InvalidSpec", message[:1024]):
            self._event(body, Event("Warning", "InvalidSpec", message[:1024]), now)
        self._write_status(res, body, new)


def _stalled(
    old: list[Condition], reason: str, message: str, body: Obj, now: datetime
) -> list[Condition]:
    """The conditions of a resource that stays Ready=False and Stalled for `reason`."""
    return summarize(
        old,
        ready=False,
        reason=reason,
        message=message,
        reconciling=False,
        stalled=True,
        generation=int(body["metadata"].get("generation") or 1),
        now=format_time(now),
    )


def _conditions(status: dict[str, Any]) -> list[Condition]:
    out: list[Condition] = []
    for raw in status.get("conditions") or []:
        try:
            out.append(Condition.model_validate(raw))
        except ValueError:
            continue
    return out


def _declares_message(kind: Any) -> bool:
    """Whether the kind's status has a `message` field (the API server prunes it if not)."""
    model = KINDS.get(kind) if isinstance(kind, str) else None
    status = model.model_fields.get("status") if model is not None else None
    return status is not None and any(
        "message" in getattr(arg, "model_fields", {}) for arg in get_args(status.annotation)
    )
