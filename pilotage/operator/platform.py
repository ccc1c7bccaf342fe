"""The Kubernetes platform: observations read from the cluster, actions carried out on it.

Reads: Jobs and their pods (run state, termination message), Deployments (server and
router readiness), router pods' `/admin/stats`, TrainingJobs, Datasets, DriftMonitors.
Writes: what `build.py` builds, create-if-absent or patched only when it differs; the
routing table goes to a ConfigMap (for restarts) and to every ready router pod's admin
port (`PUT /admin/routes`, bearer token from a Secret the operator creates). It names
each version's Service, or with autoscaling each of its ready server pods.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import ValidationError

from pilotage.api import Dataset, DriftMonitor, ModelDeployment, Resource, TrainingJob
from pilotage.api.modelcard import CARD_FILE, ModelCard
from pilotage.control.common import parse_time
from pilotage.control.observe import server_counters as parse_server_counters
from pilotage.control.observe import training_job_info
from pilotage.control.types import (
    CreateTrainingJob,
    DeleteRun,
    EnsureRouter,
    EnsureServer,
    LogCounters,
    RemoveServer,
    RouterState,
    RouterStats,
    RunState,
    ServerCounters,
    ServerState,
    SetRoutes,
    StartRun,
    TableRejection,
    TrainingJobInfo,
    VariantStats,
)
from pilotage.operator import build, names
from pilotage.operator.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    JOBS,
    PODS,
    SECRETS,
    SERVICES,
    Kube,
    Obj,
    Res,
    pilotage,
)
from pilotage.operator.patching import is_subset
from pilotage.operator.settings import OperatorSettings
from pilotage.storage import StorageError, join, read_bytes
from pilotage.wire.admin import RouterAdminError, call, get_stats, push_routes
from pilotage.wire.router_stats import parse_router_stats

log = logging.getLogger("pilotage.operator")

DATASETS = pilotage("datasets")
TRAININGJOBS = pilotage("trainingjobs")
MODELDEPLOYMENTS = pilotage("modeldeployments")
DRIFTMONITORS = pilotage("driftmonitors")
PATCHED_KEYS = ("spec", "data", "type")
R = TypeVar("R", bound=Resource)


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _has_labels(obj: Obj, labels: Mapping[str, str]) -> bool:
    """Whether ``obj`` carries every one of ``labels`` (a matchLabels selector)."""
    own = (obj.get("metadata") or {}).get("labels") or {}
    return all(own.get(k) == v for k, v in labels.items())


def _true_conditions(obj: Obj) -> dict[str, Obj]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def _pod_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return (
        status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and "Ready" in _true_conditions(pod)
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def termination_result(pods: list[Obj], container: str = "trainer") -> Mapping[str, Any] | None:
    """The JSON summary in the newest pod's termination message (None when absent)."""
    newest = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    for pod in reversed(newest):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if status.get("name") != container or not terminated.get("message"):
                continue
            try:
                doc = json.loads(terminated["message"])
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def crash_loop(pods: list[Obj]) -> tuple[bool, int, str]:
    """Whether any of a server's pods is in CrashLoopBackOff, the most restarts of one of
    their containers, and why the last one exited (its termination message's last line,
    else its exit code)."""
    looping, restarts, why = False, 0, ""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            restarts = max(restarts, int(cs.get("restartCount") or 0))
            waiting = (cs.get("state") or {}).get("waiting") or {}
            looping = looping or waiting.get("reason") == "CrashLoopBackOff"
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if last:
                lines = [ln for ln in str(last.get("message") or "").splitlines() if ln.strip()]
                code = f"exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})"
                why = f"server exited: {lines[-1].strip()}" if lines else f"server {code}"
    return looping, restarts, why


def termination_exit_code(pods: list[Obj], container: str = "trainer") -> int | None:
    """The exit code of the newest pod's terminated container (None when unknown)."""
    newest = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    for pod in reversed(newest):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            code = terminated.get("exitCode")
            if status.get("name") == container and isinstance(code, int):
                return code
    return None


def sum_router_stats(all_stats: list[RouterStats]) -> RouterStats | None:
    """Counters of several router pods added up per (variant, version)."""
    if not all_stats:
        return None
    merged: dict[tuple[str, str], VariantStats] = {}
    for stats in all_stats:
        for v in stats.variants:
            key = (v.name, v.version)
            if key not in merged:
                merged[key] = v
                continue
            m = merged[key]
            counts = tuple(a + b for a, b in zip(m.latency_counts, v.latency_counts, strict=False))
            merged[key] = replace(
                m,
                requests=m.requests + v.requests,
                errors=m.errors + v.errors,
                latency_counts=counts,
                in_flight=m.in_flight + v.in_flight,
                busy_seconds=m.busy_seconds + v.busy_seconds,
                held=m.held + v.held,
            )
    revisions = {s.revision for s in all_stats}
    first = all_stats[0]
    return replace(
        first,
        variants=tuple(merged.values()),
        # Only a revision every pod reports is live; otherwise the push is still under way.
        revision=first.revision if len(revisions) == 1 else None,
        sequence=max((s.sequence for s in all_stats if s.sequence is not None), default=None),
        reload_errors=sum(s.reload_errors for s in all_stats),
        last_reload_error=next(
            (s.last_reload_error for s in all_stats if s.last_reload_error), None
        ),
        logging=_sum_logging([s.logging for s in all_stats if s.logging is not None]),
    )


def _sum_logging(counters: list[LogCounters]) -> LogCounters | None:
    """Inference-log counters of several router pods added up."""
    if not counters:
        return None
    return LogCounters(
        written=sum(c.written for c in counters),
        labels=sum(c.labels for c in counters),
        dropped=sum(c.dropped for c in counters),
        last_error=next((c.last_error for c in counters if c.last_error), None),
    )


class Addresses:
    """Where things are reached on the cluster network: a version's Service by its DNS
    name (the URL router pods forward to) and a pod by its IP (router admin API, server
    drift counters). Tests without a cluster network pass their own mapping."""

    def __init__(self, settings: OperatorSettings):
        self.settings = settings

    def server_url(self, deployment: str, version: str, namespace: str) -> str:
        return build.server_url(deployment, version, namespace, self.settings)

    def pod_url(self, pod: Obj, port: int) -> str:
        return f"http://{pod['status']['podIP']}:{port}"

    def server_pod_url(self, pod: Obj) -> str:
        """Where the router reaches one server pod (autoscaling routes pod by pod)."""
        return self.pod_url(pod, self.settings.server_port)


class KubernetesPlatform:
    """Observes and acts on one cluster for the reconcilers (a `control.platform.Platform`
    whose actions are for the owner resource's body)."""

    def __init__(self, kube: Kube, settings: OperatorSettings, addresses: Addresses | None = None):
        self.kube = kube
        self.settings = settings
        self.addresses = addresses or Addresses(settings)
        self._tokens: dict[tuple[str, str], str] = {}
        self._tokens_lock = threading.Lock()
        # The last routing table a router pod refused, per (namespace, deployment); a push
        # every pod accepts clears it.
        self._rejections: dict[tuple[str, str], TableRejection] = {}
        self._rejections_lock = threading.Lock()

    # ---- observations ------------------------------------------------------------------

    @property
    def artifact_uri(self) -> str:
        return self.settings.artifact_uri

    def run_state(self, namespace: str, name: str | None) -> RunState | None:
        if not name:
            return None
        job = self.kube.get(JOBS, namespace, name)
        if job is None:
            return None
        status = job.get("status") or {}
        conditions = _true_conditions(job)
        started = parse_time(status.get("startTime")) or parse_time(
            job["metadata"].get("creationTimestamp")
        )
        complete = conditions.get("Complete") or conditions.get("SuccessCriteriaMet")
        failed = conditions.get("Failed") or conditions.get("FailureTarget")
        if complete is None and failed is None:
            return RunState(name=name, phase="Running", started=started)
        pods = self.kube.list(PODS, namespace, _selector({names.LABEL_RUN: name}))
        result = termination_result(pods)
        if complete is not None:
            finished = parse_time(status.get("completionTime")) or parse_time(
                complete.get("lastTransitionTime")
            )
            if result is None:
                return RunState(
                    name,
                    "Failed",
                    started,
                    finished,
                    None,
                    "the run succeeded but left no JSON summary in its termination message",
                )
            return RunState(name, "Succeeded", started, finished, result)
        assert failed is not None
        finished = parse_time(failed.get("lastTransitionTime"))
        reason = failed.get("reason") or "Failed"
        message = str((result or {}).get("message") or failed.get("message") or "")
        return RunState(
            name,
            "Failed",
            started,
            finished,
            result,
            f"{reason}: {message}".strip(),
            exit_code=termination_exit_code(pods),
        )

    def dataset(self, namespace: str, name: str) -> Dataset | None:
        return self._read(DATASETS, Dataset, namespace, name)

    def deployment(self, namespace: str, name: str) -> ModelDeployment | None:
        return self._read(MODELDEPLOYMENTS, ModelDeployment, namespace, name)

    def _read(self, res: Res, model: type[R], namespace: str, name: str) -> R | None:
        """The resource, None when it is absent or its body does not validate."""
        body = self.kube.get(res, namespace, name)
        if body is None:
            return None
        try:
            return model.model_validate(body)
        except ValidationError:
            return None

    def training_jobs(
        self, namespace: str, labels: Mapping[str, str] | None = None
    ) -> tuple[TrainingJobInfo, ...]:
        infos = []
        selector = _selector(labels) if labels else None
        for body in self.kube.list(TRAININGJOBS, namespace, selector):
            try:
                tj = TrainingJob.model_validate(body)
            except ValidationError:
                continue
            owner = next(
                (r for r in body["metadata"].get("ownerReferences") or [] if r.get("controller")),
                None,
            )
            infos.append(
                training_job_info(
                    tj,
                    owner_kind=owner.get("kind") if owner else None,
                    owner_name=owner.get("name") if owner else None,
                )
            )
        return tuple(infos)

    def servers(self, namespace: str, deployment: str) -> tuple[ServerState, ...]:
        labels = {
            names.LABEL_DEPLOYMENT: names.label_value(deployment),
            names.LABEL_ROLE: names.ROLE_SERVER,
        }
        states = []
        pods = self.kube.list(PODS, namespace, _selector(labels))
        for dep in self.kube.list(DEPLOYMENTS, namespace, _selector(labels)):
            version = (dep["metadata"].get("annotations") or {}).get(names.ANNOTATION_MODEL_VERSION)
            if version is None:
                continue
            wanted = int((dep.get("spec") or {}).get("replicas") or 0)
            status = dep.get("status") or {}
            ready = int(status.get("readyReplicas") or 0)
            updated = int(status.get("updatedReplicas") or 0)
            current = int(status.get("observedGeneration") or 0) >= int(
                dep["metadata"].get("generation") or 0
            )
            is_ready = current and wanted > 0 and ready >= wanted and updated >= wanted
            match = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            mine = [p for p in pods if _has_labels(p, match)]
            looping, restarts, why = crash_loop(mine)
            message = f"{ready}/{wanted} pods ready"
            if looping and not is_ready:
                message = f"{why or 'the container exits'} (CrashLoopBackOff)"
            states.append(
                ServerState(
                    version,
                    is_ready,
                    message,
                    failing=looping and not is_ready,
                    restarts=restarts,
                    ready_replicas=ready,
                )
            )
        return tuple(states)

    def router(self, namespace: str, deployment: str) -> RouterState | None:
        dep = self.kube.get(DEPLOYMENTS, namespace, names.router_name(deployment))
        if dep is None:
            return None
        endpoint = build.router_endpoint(deployment, namespace, self.settings)
        with self._rejections_lock:
            rejection = self._rejections.get((namespace, deployment))
        ready = int((dep.get("status") or {}).get("readyReplicas") or 0) > 0
        if not ready:
            return RouterState(ready=False, endpoint=endpoint, rejection=rejection)
        collected = []
        for pod in self._router_pods(namespace, deployment):
            doc = self._admin_stats(namespace, deployment, pod)
            if doc is not None:
                collected.append(parse_router_stats(doc))
        stats = sum_router_stats(collected)
        return RouterState(ready=True, endpoint=endpoint, stats=stats, rejection=rejection)

    def drift_monitors(self, namespace: str) -> tuple[DriftMonitor, ...]:
        monitors = []
        for body in self.kube.list(DRIFTMONITORS, namespace):
            try:
                monitors.append(DriftMonitor.model_validate(body))
            except ValidationError:
                continue
        return tuple(monitors)

    def server_counters(
        self, namespace: str, deployment: str, version: str
    ) -> tuple[ServerCounters, ...]:
        """Drift counters of every ready server pod of (deployment, version)."""
        selector = _selector(build.server_selector(deployment, version))
        out = []
        for pod in self.kube.list(PODS, namespace, selector):
            if not _pod_ready(pod):
                continue
            url = (
                self.addresses.pod_url(pod, self.settings.server_port)
                + f"/v1/models/{deployment}/drift"
            )
            doc = _http_json("GET", url, self.settings.http_timeout_seconds)
            if doc is None:
                continue
            replica = f"{pod['metadata']['name']}@{pod['metadata'].get('uid', '')}"
            out.append(parse_server_counters(doc, replica))
        return tuple(out)

    def read_model_card(
        self, uri: str, served_by: tuple[str, str, str] | None = None
    ) -> ModelCard | None:
        """model.json of a model directory (the `Observer` caches it).

        Read from the artifact store when the operator can (S3, or the claim mounted at
        the same pvcRoot), else from a ready server pod of `served_by` (namespace,
        deployment, version), which loaded it: a claim in a workload namespace cannot be
        mounted by the operator's pod in another one."""
        try:
            return ModelCard.model_validate_json(read_bytes(join(uri, CARD_FILE)))
        except (StorageError, ValueError) as exc:
            card = self._served_card(*served_by) if served_by is not None else None
            if card is None:
                log.warning("cannot read the model card at %s: %s", uri, exc)
            return card

    def _served_card(self, namespace: str, deployment: str, version: str) -> ModelCard | None:
        selector = _selector(build.server_selector(deployment, version))
        for pod in self.kube.list(PODS, namespace, selector):
            if not _pod_ready(pod):
                continue
            url = self.addresses.pod_url(pod, self.settings.server_port)
            doc = _http_json(
                "GET", f"{url}/v1/models/{deployment}/card", self.settings.http_timeout_seconds
            )
            if doc is None:
                continue
            try:
                card = ModelCard.model_validate(doc)
            except ValidationError:
                continue
            if card.version == version:
                return card
        return None

    # ---- actions (`owner` is the body of the resource whose reconcile asked) ------------

    def start_run(self, owner: Obj, action: StartRun) -> None:
        namespace = owner["metadata"]["namespace"]
        self.kube.create(CONFIGMAPS, namespace, build.build_manifests_configmap(action, owner))
        self.kube.create(JOBS, namespace, build.build_job(action, owner, self.settings))

    def delete_run(self, owner: Obj, action: DeleteRun) -> None:
        namespace = owner["metadata"]["namespace"]
        self.kube.delete(JOBS, namespace, action.name)
        self.kube.delete(CONFIGMAPS, namespace, names.manifests_configmap_name(action.name))

    def ensure_server(self, owner: Obj, action: EnsureServer) -> None:
        self.ensure(DEPLOYMENTS, build.build_server_deployment(action, owner, self.settings))
        service = build.build_server_service(
            action.deployment, action.version, owner, self.settings
        )
        self.ensure(SERVICES, service)

    def remove_server(self, owner: Obj, action: RemoveServer) -> None:
        namespace = owner["metadata"]["namespace"]
        name = names.server_name(action.deployment, action.version)
        self.kube.delete(DEPLOYMENTS, namespace, name)
        self.kube.delete(SERVICES, namespace, name)

    def ensure_router(self, owner: Obj, action: EnsureRouter) -> None:
        self._token(owner, action.deployment)
        self.ensure(DEPLOYMENTS, build.build_router_deployment(action, owner, self.settings))
        self.ensure(SERVICES, build.build_router_service(action.deployment, owner, self.settings))

    def create_training_job(self, owner: Obj, action: CreateTrainingJob) -> None:
        namespace = owner["metadata"]["namespace"]
        self.kube.create(TRAININGJOBS, namespace, build.build_training_job(action.manifest, owner))

    def ensure(self, res: Res, desired: Mapping[str, Any]) -> None:
        """Create ``desired``, or merge-patch it where the live object differs."""
        meta = desired["metadata"]
        live = self.kube.get(res, meta["namespace"], meta["name"])
        if live is None:
            if self.kube.create(res, meta["namespace"], desired) is not None:
                return
            live = self.kube.get(res, meta["namespace"], meta["name"]) or {}
        wanted = {k: desired[k] for k in PATCHED_KEYS if k in desired}
        wanted["metadata"] = {
            k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta
        }
        if not is_subset(wanted, live):
            self.kube.patch(res, meta["namespace"], meta["name"], wanted)

    def set_routes(self, owner: Obj, action: SetRoutes) -> None:
        namespace = owner["metadata"]["namespace"]
        urls: dict[str, str | list[str]]
        if action.table.activation is None:
            urls = {
                v.version: self.addresses.server_url(action.deployment, v.version, namespace)
                for v in action.table.variants
            }
        else:
            # autoscaling: each version's ready pods, one by one (the router balances
            # over them and takes a failing one out); none at zero, and the router
            # holds the version's requests until one is ready
            urls = self.server_pod_urls(
                namespace, action.deployment, {v.version for v in action.table.variants}
            )
        document = action.table.to_document(action.deployment, urls)
        self.ensure(CONFIGMAPS, build.build_routes_configmap(action.deployment, document, owner))
        accepted, refusals = False, []
        admin_urls, token = self.router_admin(namespace, action.deployment) or ([], "")
        for admin_url in admin_urls:
            try:
                push_routes(admin_url, token, document, self.settings.http_timeout_seconds)
                accepted = True
            except RouterAdminError as exc:
                log.warning("%s", exc)
                if exc.refused:
                    refusals.append(exc.error)
        key = (namespace, action.deployment)
        with self._rejections_lock:
            if refusals:
                self._rejections[key] = TableRejection(action.table.revision, refusals[0])
            elif accepted:
                self._rejections.pop(key, None)

    def server_pod_urls(
        self, namespace: str, deployment: str, versions: set[str]
    ) -> dict[str, str | list[str]]:
        """Version → the URLs of its ready server pods (sorted; [] when none is ready)."""
        labels = {
            names.LABEL_DEPLOYMENT: names.label_value(deployment),
            names.LABEL_ROLE: names.ROLE_SERVER,
        }
        pods = [p for p in self.kube.list(PODS, namespace, _selector(labels)) if _pod_ready(p)]
        out: dict[str, str | list[str]] = {}
        for version in versions:
            selector = build.server_selector(deployment, version)
            out[version] = sorted(
                self.addresses.server_pod_url(p) for p in pods if _has_labels(p, selector)
            )
        return out

    # ---- router admin API --------------------------------------------------------------

    def _token(self, owner: Obj, deployment: str) -> str:
        namespace = owner["metadata"]["namespace"]
        key = (namespace, deployment)
        with self._tokens_lock:
            if key in self._tokens:
                return self._tokens[key]
        secret_name = names.router_token_secret_name(deployment)
        secret = self.kube.get(SECRETS, namespace, secret_name)
        if secret is None:
            token = secrets.token_urlsafe(32)
            body = build.build_router_token_secret(deployment, token, owner)
            if self.kube.create(SECRETS, namespace, body) is None:
                secret = self.kube.get(SECRETS, namespace, secret_name)
        if secret is not None:
            token = _secret_value(secret, build.ADMIN_TOKEN_KEY)
        with self._tokens_lock:
            self._tokens[key] = token
        return token

    def _known_token(self, namespace: str, deployment: str) -> str | None:
        with self._tokens_lock:
            if (namespace, deployment) in self._tokens:
                return self._tokens[(namespace, deployment)]
        secret = self.kube.get(SECRETS, namespace, names.router_token_secret_name(deployment))
        if secret is None:
            return None
        token = _secret_value(secret, build.ADMIN_TOKEN_KEY)
        with self._tokens_lock:
            self._tokens[(namespace, deployment)] = token
        return token

    def router_admin(self, namespace: str, deployment: str) -> tuple[list[str], str] | None:
        """The admin URLs of the deployment's ready router pods and the admin token (None
        when the token Secret does not exist yet)."""
        token = self._known_token(namespace, deployment)
        if token is None:
            return None
        port = self.settings.router_admin_port
        pods = self._router_pods(namespace, deployment)
        return [self.addresses.pod_url(p, port) for p in pods], token

    def _router_pods(self, namespace: str, deployment: str) -> list[Obj]:
        selector = _selector(build.router_selector(deployment))
        return [p for p in self.kube.list(PODS, namespace, selector) if _pod_ready(p)]

    def _admin_stats(self, namespace: str, deployment: str, pod: Obj) -> dict[str, Any] | None:
        """One router pod's stats document (None when it cannot be read)."""
        token = self._known_token(namespace, deployment)
        if token is None:
            return None
        admin_url = self.addresses.pod_url(pod, self.settings.router_admin_port)
        try:
            return get_stats(admin_url, token, self.settings.http_timeout_seconds)
        except RouterAdminError as exc:
            log.warning("%s", exc)
            return None


def _http_json(method: str, url: str, timeout: float) -> dict[str, Any] | None:
    """A model server's JSON object (None on any failure, which is logged)."""
    try:
        doc = call(method, url, None, None, timeout)
    except RouterAdminError as exc:
        log.warning("%s", exc)
        return None
    return doc if isinstance(doc, dict) else None


def _secret_value(secret: Obj, key: str) -> str:
    return base64.b64decode((secret.get("data") or {}).get(key, "")).decode()
