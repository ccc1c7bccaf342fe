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
from pilotage.api.dataset import Dataset
from pilotage.api.driftmonitor import DriftMonitor
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.api.trainingjob import TrainingJob
from pilotage.control.common import LABEL_MONITOR, format_time
from pilotage.control.dataset import reconcile_dataset
from pilotage.control.driftmonitor import reconcile_driftmonitor
from pilotage.control.modeldeployment import reconcile_modeldeployment
from pilotage.control.observe import feedback_of
from pilotage.control.trainingjob import reconcile_trainingjob
from pilotage.control.types import (
    DatasetObservation,
    DriftMonitorObservation,
    Event,
    ModelDeploymentObservation,
    Result,
    TrainingJobObservation,
)
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
        self.clock = clock
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Conditions a Forbidden condition replaced, put back once the call is allowed.
        self._replaced: dict[tuple[str, str, str], Any] = {}
        self.kinds: dict[str, tuple[Res, Callable[[Any, Obj, datetime], Result[Any]]]] = {
            "datasets": (DATASETS, self._dataset),
            "trainingjobs": (TRAININGJOBS, self._trainingjob),
            "modeldeployments": (MODELDEPLOYMENTS, self._modeldeployment),
            "driftmonitors": (DRIFTMONITORS, self._driftmonitor),
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
        res, step = self.kinds[plural]
        with self._lock((plural, namespace, name)):
            body = self.kube.get(res, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            now = self.clock()
            try:
                resource = parse_resource(body)
            except ManifestError as exc:
                self._invalid(res, body, str(exc), now)
                return None
            key = (plural, namespace, name)
            try:
                result = step(resource, body, now)
                for action in result.actions:
                    try:
                        self.platform.apply(body, action)
                    except KubeError as exc:
                        if exc.forbidden:
                            raise
                        message = f"{type(action).__name__} failed: {exc}"
                        log.warning("%s/%s/%s: %s", plural, namespace, name, message)
                        self._event(body, Event("Warning", "ActionFailed", message), now)
                        return ACTION_RETRY_SECONDS
                self._write_status(res, body, self._permitted(key, result.status.dump()))
            except KubeError as exc:
                if not exc.forbidden:
                    raise
                self._forbidden(key, res, body, exc, now)
                return ACTION_RETRY_SECONDS
            for event in result.events:
                self._event(body, event, now)
            return result.requeue_after

    # ---- per kind ----------------------------------------------------------------------

    def _dataset(self, ds: Dataset, body: Obj, now: datetime) -> Result[Any]:
        namespace = body["metadata"]["namespace"]
        run = self.platform.run_state(namespace, ds.status.run if ds.status else None)
        obs = DatasetObservation(run=run, artifact_uri=self.settings.artifact_uri)
        return reconcile_dataset(ds, obs, now)

    def _trainingjob(self, tj: TrainingJob, body: Obj, now: datetime) -> Result[Any]:
        namespace = body["metadata"]["namespace"]
        obs = TrainingJobObservation(
            dataset=self.platform.dataset(namespace, tj.spec.dataset_ref.name),
            run=self.platform.run_state(namespace, tj.status.run if tj.status else None),
            artifact_uri=self.settings.artifact_uri,
        )
        return reconcile_trainingjob(tj, obs, now)

    def _modeldeployment(self, md: ModelDeployment, body: Obj, now: datetime) -> Result[Any]:
        namespace = body["metadata"]["namespace"]
        md = self._with_analysis_defaults(md)
        uri = md.spec.model.uri
        card = self.platform.model_card(uri) if uri is not None else None
        obs = ModelDeploymentObservation(
            training_jobs=self.platform.training_jobs(namespace),
            servers=self.platform.servers(namespace, md.name),
            router=self.platform.router(namespace, md.name),
            drift=self.platform.drift(namespace, md.name),
            model_card_version=card.version if card is not None else None,
        )
        return reconcile_modeldeployment(md, obs, now)

    def _driftmonitor(self, dm: DriftMonitor, body: Obj, now: datetime) -> Result[Any]:
        namespace = body["metadata"]["namespace"]
        target = dm.spec.deployment_ref.name
        md_body = self.kube.get(MODELDEPLOYMENTS, namespace, target)
        md = None
        if md_body is not None:
            try:
                md = ModelDeployment.model_validate(md_body)
            except ValueError:
                md = None
        stable = md.status.stable if md is not None and md.status is not None else None
        card = (
            self.platform.model_card(stable.uri, (namespace, target, stable.version))
            if stable is not None
            else None
        )
        router = self.platform.router(namespace, target) if stable is not None else None
        retrain = dm.spec.on_drift.retrain
        dataset = (
            self.platform.dataset(namespace, retrain.template.spec.dataset_ref.name)
            if retrain is not None
            else None
        )
        obs = DriftMonitorObservation(
            deployment=md,
            version=stable.version if stable is not None else None,
            baseline=card.baseline if card is not None else None,
            counters=(
                self.platform.server_counters(namespace, target, stable.version)
                if stable is not None
                else ()
            ),
            feedback=(
                feedback_of(router.stats, stable.version)
                if stable is not None and router is not None and router.stats is not None
                else None
            ),
            dataset_fingerprint=(
                dataset.status.fingerprint if dataset is not None and dataset.status else None
            ),
            retrain_jobs=self.platform.training_jobs(namespace, f"{LABEL_MONITOR}={dm.name}"),
        )
        return reconcile_driftmonitor(dm, obs, now)

    def _with_analysis_defaults(self, md: ModelDeployment) -> ModelDeployment:
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
        generation = int(body["metadata"].get("generation") or 1)
        conditions = summarize(
            old,
            ready=False,
            reason="Forbidden",
            message=message,
            reconciling=False,
            stalled=True,
            generation=generation,
            now=format_time(now),
        )
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
        conditions = summarize(
            old,
            ready=False,
            reason="InvalidSpec",
            message=message,
            reconciling=False,
            stalled=True,
            generation=generation,
            now=format_time(now),
        )
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
