"""Every object the operator creates, built by pure functions: plain data in, dicts out.

Nothing here talks to the API server; `platform.py` sends what these return. Each
child carries an owner reference (garbage collection), the `app.kubernetes.io/*` and
`pilotage.dev/*` labels, and pods follow the restricted Pod Security Standard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pilotage import sources
from pilotage.api.dataset import DataSource
from pilotage.control.types import EnsureRouter, EnsureServer, Event, StartRun
from pilotage.operator import bodies as k8s
from pilotage.operator import names
from pilotage.operator.settings import OperatorSettings

Obj = dict[str, Any]

RUN_UID = 10001
CONFIG_DIR = "/config"
MANIFESTS_FILE = "manifests.yaml"
ROUTES_DIR = "/etc/pilotage"
ROUTES_FILE = "routes.yaml"
ADMIN_TOKEN_DIR = "/etc/pilotage/admin"
ADMIN_TOKEN_KEY = "token"
# user Secrets named by spec.router.variantTokenSecret / feedbackTokenSecret (key `token`)
VARIANT_TOKEN_DIR = "/etc/pilotage/variant"
FEEDBACK_TOKEN_DIR = "/etc/pilotage/feedback"
USER_TOKEN_KEY = "token"
TERMINATION_LOG = "/dev/termination-log"
# a data source's own credentials Secret: <CREDENTIALS_DIR>/<secret name>/<key>
CREDENTIALS_DIR = sources.DEFAULT_CREDENTIALS_DIR


# ---- shared pieces -------------------------------------------------------------------


def pod_security_context() -> k8s.PodSecurityContext:
    """Pod-level part of the restricted Pod Security Standard (non-root, RuntimeDefault)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_UID,
        "runAsGroup": RUN_UID,
        "fsGroup": RUN_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> k8s.SecurityContext:
    """Container-level part: no escalation, every capability dropped, read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def owner_reference(owner: Mapping[str, Any]) -> k8s.OwnerReference:
    """The controller owner reference to ``owner`` (a full object with uid)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(component: str, instance: str, **extra: str) -> dict[str, str]:
    out = {
        names.LABEL_NAME: "pilotage",
        names.LABEL_INSTANCE: names.label_value(instance),
        names.LABEL_COMPONENT: component,
        names.LABEL_PART_OF: "pilotage",
        names.LABEL_MANAGED_BY: names.MANAGER,
    }
    out.update({k: names.label_value(v) for k, v in extra.items()})
    return out


def metadata(
    name: str,
    owner: Mapping[str, Any],
    labels_: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> k8s.ObjectMeta:
    meta: k8s.ObjectMeta = {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels_,
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations is not None:
        meta["annotations"] = annotations
    return meta


def resources(spec: Mapping[str, Any]) -> k8s.ResourceRequirements:
    """Container resources from a `{requests, limits}` mapping, empty parts left out."""
    out: k8s.ResourceRequirements = {}
    if spec.get("requests"):
        out["requests"] = dict(spec["requests"])
    if spec.get("limits"):
        out["limits"] = dict(spec["limits"])
    return out


def checksum(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class StorageWiring:
    """What a pod needs to reach artifact URIs and data sources: volumes, mounts, env."""

    volumes: list[k8s.Volume] = field(default_factory=list)
    mounts: list[k8s.VolumeMount] = field(default_factory=list)
    env: list[k8s.EnvVar] = field(default_factory=list)


def credentials_volume(secret: str) -> str:
    """The volume name of a data source's own credentials Secret (a DNS label)."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:8]
    return f"{names.dns_label(f'credentials-{secret}')[:54].rstrip('-')}-{digest}"


def storage_for(
    uris: Iterable[str], settings: OperatorSettings, data: Iterable[DataSource] = ()
) -> StorageWiring:
    """What reaching ``uris`` (artifacts, models) and reading ``data`` takes, as
    pilotage.sources says (`Access`): each claim is mounted at `<pvcRoot>/CLAIM`; the S3
    store brings its endpoint and region as env, and the operator-wide credentials Secret
    for what has no Secret of its own; a source's own Secret is mounted, read only, at
    `$PILOTAGE_CREDENTIALS_DIR/<name>`, and only there."""
    needs = [sources.uri_access(uri) for uri in uris]
    needs += [sources.source_for(source.uri).access(source) for source in data]
    claims = list(dict.fromkeys(claim for need in needs for claim in need.claims))
    secrets = list(dict.fromkeys(need.secret for need in needs if need.secret))
    wiring = StorageWiring()
    for claim in claims:
        volume = names.dns_label(f"pvc-{claim}")[:63]
        wiring.volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim}})
        wiring.mounts.append({"name": volume, "mountPath": f"{settings.pvc_root}/{claim}"})
    if claims:
        wiring.env.append({"name": "PILOTAGE_PVC_ROOT", "value": settings.pvc_root})
    if any(need.s3 for need in needs):
        if settings.s3_endpoint:
            wiring.env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint})
        if settings.s3_region:
            wiring.env.append({"name": "AWS_REGION", "value": settings.s3_region})
    if settings.s3_secret and any(need.s3 and need.secret is None for need in needs):
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            secret_key: k8s.SecretKeySelector = {"name": settings.s3_secret, "key": key}
            wiring.env.append({"name": key, "valueFrom": {"secretKeyRef": secret_key}})
    for secret in secrets:
        volume = credentials_volume(secret)
        wiring.volumes.append(
            {"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}}
        )
        wiring.mounts.append(
            {"name": volume, "mountPath": f"{CREDENTIALS_DIR}/{secret}", "readOnly": True}
        )
    if secrets:
        wiring.env.append({"name": sources.CREDENTIALS_ENV, "value": CREDENTIALS_DIR})
    return wiring


def _scratch_volume(name: str, path: str) -> tuple[k8s.Volume, k8s.VolumeMount]:
    return {"name": name, "emptyDir": {}}, {"name": name, "mountPath": path}


def _pod_spec(
    containers: list[k8s.Container], volumes: list[k8s.Volume], settings: OperatorSettings
) -> k8s.PodSpec:
    spec: k8s.PodSpec = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": volumes,
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    return spec


ROUTER_HEALTH_PATH = "/pilotage/healthz"
"""The router's own health endpoint. Its probes must not use the model server's
`/v2/health/*` paths: the router forwards those to the stable variant, so every probe
counted as a request (an autoscaled variant never became idle, never went to zero) and,
at zero, would be held and wake the variant."""


def _readiness(port_name: str, path: str = "/v2/health/ready") -> k8s.Probe:
    return {
        "httpGet": {"path": path, "port": port_name},
        "periodSeconds": 2,
        "failureThreshold": 3,
    }


def _liveness(port_name: str, path: str = "/v2/health/live") -> k8s.Probe:
    return {
        "httpGet": {"path": path, "port": port_name},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "failureThreshold": 3,
    }


def _prometheus(port: int) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


# ---- training and profiling runs -----------------------------------------------------


def build_manifests_configmap(run: StartRun, owner: Mapping[str, Any]) -> k8s.ConfigMap:
    """The manifests a run reads, mounted at `/config/manifests.yaml`."""
    text = yaml.safe_dump_all(run.manifests, sort_keys=False)
    lbl = labels(names.ROLE_TRAINER, run.owner_name, **{names.LABEL_RUN: run.name})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(names.manifests_configmap_name(run.name), owner, lbl),
        "data": {MANIFESTS_FILE: text},
    }


def build_job(run: StartRun, owner: Mapping[str, Any], settings: OperatorSettings) -> k8s.Job:
    """The batch/v1 Job of one training or profiling attempt.

    The trainer writes its JSON summary to the termination message; the Job never
    retries by itself (attempts are counted by the TrainingJob, which names each run).
    """
    storage = storage_for([run.output_uri, settings.artifact_uri], settings, run.data)
    config_volume: k8s.Volume = {
        "name": "manifests",
        "configMap": {"name": names.manifests_configmap_name(run.name)},
    }
    tmp_volume, tmp_mount = _scratch_volume("tmp", "/tmp")
    lbl = labels(
        names.ROLE_TRAINER,
        run.owner_name,
        **{
            names.LABEL_RUN: run.name,
            names.LABEL_PURPOSE: run.purpose,
            names.LABEL_OWNER_KIND: run.owner_kind,
            names.LABEL_OWNER_NAME: run.owner_name,
        },
    )
    container: k8s.Container = {
        "name": "trainer",
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["pilotage"],
        "args": [run.purpose, "-f", f"{CONFIG_DIR}/{MANIFESTS_FILE}", "--output", run.output_uri],
        "env": [{"name": "HOME", "value": "/tmp"}, *storage.env],
        "resources": resources(run.resources),
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"name": "manifests", "mountPath": CONFIG_DIR, "readOnly": True},
            tmp_mount,
            *storage.mounts,
        ],
    }
    pod_spec = _pod_spec([container], [config_volume, tmp_volume, *storage.volumes], settings)
    pod_spec["restartPolicy"] = "Never"
    job_spec: k8s.JobSpec = {
        "backoffLimit": settings.trainer_backoff_limit,
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "template": {"metadata": {"labels": lbl}, "spec": pod_spec},
    }
    if run.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = max(1, int(run.deadline_seconds))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(run.name, owner, lbl),
        "spec": job_spec,
    }


# ---- model servers -------------------------------------------------------------------


def server_labels(deployment: str, version: str) -> dict[str, str]:
    return labels(
        names.ROLE_SERVER,
        deployment,
        **{
            names.LABEL_DEPLOYMENT: deployment,
            names.LABEL_MODEL_VERSION: version,
            names.LABEL_ROLE: names.ROLE_SERVER,
        },
    )


def server_selector(deployment: str, version: str) -> dict[str, str]:
    full = server_labels(deployment, version)
    keys = (names.LABEL_DEPLOYMENT, names.LABEL_MODEL_VERSION, names.LABEL_ROLE)
    return {k: full[k] for k in keys}


def server_url(deployment: str, version: str, namespace: str, settings: OperatorSettings) -> str:
    """The in-cluster URL the router sends a version's traffic to."""
    service = names.server_name(deployment, version)
    return f"http://{service}.{namespace}.svc:{settings.server_port}"


def build_server_deployment(
    action: EnsureServer, owner: Mapping[str, Any], settings: OperatorSettings
) -> k8s.Deployment:
    """apps/v1 Deployment of one model version (`pilotage serve --model-uri ...`)."""
    storage = storage_for([action.model_uri], settings)
    cache_volume, cache_mount = _scratch_volume("model-cache", "/tmp")
    lbl = server_labels(action.deployment, action.version)
    s = action.settings
    container: k8s.Container = {
        "name": "server",
        "image": settings.server_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["pilotage"],
        "args": [
            "serve",
            "--model-uri",
            action.model_uri,
            "--name",
            action.deployment,
            "--host",
            "0.0.0.0",
            "--port",
            str(settings.server_port),
            "--threads",
            str(s.threads),
            "--max-batch-size",
            str(s.max_batch_size),
            "--max-batch-wait-us",
            str(s.max_batch_wait_us),
            *(["--strict-schema"] if s.strict_schema else []),
            "--cache-dir",
            "/tmp/models",
            *(["--enable-fault-injection"] if settings.server_fault_injection else []),
        ],
        "env": [{"name": "HOME", "value": "/tmp"}, *storage.env],
        "ports": [{"name": "http", "containerPort": settings.server_port, "protocol": "TCP"}],
        "resources": resources(s.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [cache_mount, *storage.mounts],
        # A server that refuses its model says why in its last log line; the kubelet keeps
        # it in lastState.terminated.message, where the operator reads a crash loop's cause.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "readinessProbe": _readiness("http"),
        "livenessProbe": _liveness("http"),
    }
    template: k8s.PodTemplateSpec = {
        "metadata": {"labels": lbl, "annotations": _prometheus(settings.server_port)},
        "spec": _pod_spec([container], [cache_volume, *storage.volumes], settings),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            names.server_name(action.deployment, action.version),
            owner,
            lbl,
            annotations={names.ANNOTATION_MODEL_VERSION: action.version},
        ),
        "spec": {
            "replicas": action.replicas,
            "selector": {"matchLabels": server_selector(action.deployment, action.version)},
            "template": template,
        },
    }


def build_server_service(
    deployment: str, version: str, owner: Mapping[str, Any], settings: OperatorSettings
) -> k8s.Service:
    lbl = server_labels(deployment, version)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(names.server_name(deployment, version), owner, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": server_selector(deployment, version),
            "ports": [
                {
                    "name": "http",
                    "port": settings.server_port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


# ---- router --------------------------------------------------------------------------


def router_labels(deployment: str) -> dict[str, str]:
    return labels(
        names.ROLE_ROUTER,
        deployment,
        **{names.LABEL_DEPLOYMENT: deployment, names.LABEL_ROLE: names.ROLE_ROUTER},
    )


def router_selector(deployment: str) -> dict[str, str]:
    full = router_labels(deployment)
    return {k: full[k] for k in (names.LABEL_DEPLOYMENT, names.LABEL_ROLE)}


def router_endpoint(deployment: str, namespace: str, settings: OperatorSettings) -> str:
    return f"http://{names.router_name(deployment)}.{namespace}.svc:{settings.router_port}"


def build_routes_configmap(
    deployment: str, document: Mapping[str, Any], owner: Mapping[str, Any]
) -> k8s.ConfigMap:
    """The routing table a router pod reads at start (and watches)."""
    lbl = router_labels(deployment)
    meta = metadata(
        names.routes_configmap_name(deployment),
        owner,
        lbl,
        annotations={
            names.ANNOTATION_ROUTES_REVISION: str(document.get("revision", "")),
            names.ANNOTATION_ROUTES_CHECKSUM: checksum(document),
        },
    )
    text = yaml.safe_dump(dict(document), sort_keys=False)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {ROUTES_FILE: text}}


def build_router_token_secret(deployment: str, token: str, owner: Mapping[str, Any]) -> k8s.Secret:
    """The bearer token of the router's admin API, shared by operator and router pods."""
    meta = metadata(names.router_token_secret_name(deployment), owner, router_labels(deployment))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta,
        "stringData": {ADMIN_TOKEN_KEY: token},
    }


def build_router_deployment(
    action: EnsureRouter, owner: Mapping[str, Any], settings: OperatorSettings
) -> k8s.Deployment:
    """apps/v1 Deployment of the router (`pilotage route --config ... --admin-port ...`)."""
    lbl = router_labels(action.deployment)
    volumes: list[k8s.Volume] = [
        {"name": "routes", "configMap": {"name": names.routes_configmap_name(action.deployment)}},
        {
            "name": "admin-token",
            "secret": {
                "secretName": names.router_token_secret_name(action.deployment),
                "defaultMode": 0o440,
            },
        },
    ]
    container: k8s.Container = {
        "name": "router",
        "image": settings.router_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["pilotage"],
        "args": [
            "route",
            "--config",
            f"{ROUTES_DIR}/{ROUTES_FILE}",
            "--host",
            "0.0.0.0",
            "--port",
            str(settings.router_port),
            "--admin-host",
            "0.0.0.0",
            "--admin-port",
            str(settings.router_admin_port),
            "--admin-token-file",
            f"{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}",
        ],
        "ports": [
            {"name": "http", "containerPort": settings.router_port, "protocol": "TCP"},
            {"name": "admin", "containerPort": settings.router_admin_port, "protocol": "TCP"},
        ],
        "resources": resources(action.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "routes", "mountPath": ROUTES_DIR, "readOnly": True},
            {"name": "admin-token", "mountPath": ADMIN_TOKEN_DIR, "readOnly": True},
        ],
        "readinessProbe": _readiness("http", ROUTER_HEALTH_PATH),
        "livenessProbe": _liveness("http", ROUTER_HEALTH_PATH),
    }
    if action.log_sink:  # the inference log's claim mounted, or its S3 settings
        wiring = storage_for([action.log_sink], settings)
        volumes += wiring.volumes
        container["volumeMounts"] += wiring.mounts
        if wiring.env:
            container["env"] = wiring.env
    for secret, volume, directory, flag in (
        (action.variant_token_secret, "variant-token", VARIANT_TOKEN_DIR, "--variant-token-file"),
        (
            action.feedback_token_secret,
            "feedback-token",
            FEEDBACK_TOKEN_DIR,
            "--feedback-token-file",
        ),
    ):
        if secret is None:
            continue
        volumes.append(
            {
                "name": volume,
                "secret": {
                    "secretName": secret,
                    "defaultMode": 0o440,
                    "items": [{"key": USER_TOKEN_KEY, "path": USER_TOKEN_KEY}],
                },
            }
        )
        container["volumeMounts"].append({"name": volume, "mountPath": directory, "readOnly": True})
        container["args"] += [flag, f"{directory}/{USER_TOKEN_KEY}"]
    template: k8s.PodTemplateSpec = {
        "metadata": {"labels": lbl, "annotations": _prometheus(settings.router_port)},
        "spec": _pod_spec([container], volumes, settings),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(names.router_name(action.deployment), owner, lbl),
        "spec": {
            "replicas": action.replicas,
            "selector": {"matchLabels": router_selector(action.deployment)},
            "template": template,
        },
    }


def build_router_service(
    deployment: str, owner: Mapping[str, Any], settings: OperatorSettings
) -> k8s.Service:
    """The deployment's endpoint: clients send inference requests here."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(names.router_name(deployment), owner, router_labels(deployment)),
        "spec": {
            "type": "ClusterIP",
            "selector": router_selector(deployment),
            "ports": [
                {
                    "name": "http",
                    "port": settings.router_port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


# ---- retraining and events -----------------------------------------------------------


def build_training_job(manifest: Mapping[str, Any], owner: Mapping[str, Any]) -> Obj:
    """A TrainingJob a DriftMonitor creates, owned by it."""
    out = json.loads(json.dumps(manifest))
    meta = out.setdefault("metadata", {})
    meta["namespace"] = owner["metadata"]["namespace"]
    meta["ownerReferences"] = [owner_reference(owner)]
    out.pop("status", None)
    return dict(out)


def build_event(
    involved: Mapping[str, Any], event: Event, now: str, component: str = names.MANAGER
) -> k8s.Event:
    """A core/v1 Event about ``involved`` (what `kubectl describe` shows)."""
    meta = involved["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{meta['name']}.",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": event.type,
        "reason": event.reason[:128],
        "message": event.message[:1024],
        "source": {"component": component},
        "reportingComponent": f"pilotage.dev/{component}",
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "action": event.reason[:128],
    }
