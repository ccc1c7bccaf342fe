"""Operator settings: environment variables (``PILOTAGE_*``), optionally a YAML file.

The Helm chart renders a ConfigMap and passes it with ``envFrom``; a mounted YAML file
(``pilotage operator --settings FILE``) works too. Environment variables win over the
file, the file wins over the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from pilotage.api.manifests import max_manifest_bytes, read_limited, safe_load
from pilotage.operator.names import PILOTAGE_VERSION as _version

DEFAULT_IMAGE_REGISTRY = "ghcr.io/pilotage-dev"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the variable."""


class OperatorSettings(BaseSettings):
    """Everything the operator needs to know about its cluster."""

    model_config = SettingsConfigDict(env_prefix="PILOTAGE_", extra="forbid", frozen=True)

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch, comma-separated (`PILOTAGE_NAMESPACES=team-a,team-b`);
    empty = cluster-wide."""

    server_image: str = f"{DEFAULT_IMAGE_REGISTRY}/pilotage-server:{_version}"
    """Image of model server and router pods (`pilotage serve`, `pilotage route`)."""
    router_image: str = f"{DEFAULT_IMAGE_REGISTRY}/pilotage-server:{_version}"
    """Image of router pods (the server image holds the router too)."""
    trainer_image: str = f"{DEFAULT_IMAGE_REGISTRY}/pilotage-trainer:{_version}"
    """Image of training and profiling Jobs (`pilotage train`, `pilotage profile`)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of every container the operator creates."""
    service_account: str | None = None
    """ServiceAccount of the pods the operator creates (the namespace's default when unset)."""

    artifact_uri: str = "pvc://pilotage-artifacts/pilotage"
    """Default artifact store: models and profiles go under it (`pvc://CLAIM/path` or `s3://...`)."""
    pvc_root: str = "/mnt/pvc"
    """Where `pvc://CLAIM/...` claims are mounted in pods (each claim at `<root>/<claim>`)."""
    s3_endpoint: str | None = None
    """Endpoint of an S3-compatible store (`AWS_ENDPOINT_URL` in pods), e.g. MinIO."""
    s3_region: str | None = None
    """Region of the S3 store (`AWS_REGION` in pods)."""
    s3_secret: str | None = None
    """Secret (in the resource's namespace) with `AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY`, given to every pod that reads or writes `s3://`."""

    server_port: int = Field(default=8080, ge=1, le=65535)
    """Container port of model servers (inference, health, /metrics)."""
    router_port: int = Field(default=8080, ge=1, le=65535)
    """Container port of routers (inference, health, /metrics)."""
    router_admin_port: int = Field(default=9090, ge=1, le=65535)
    """Admin port of routers (`PUT /admin/routes`, `GET /admin/stats`), reached by pod IP."""
    http_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """Timeout of every call to a router pod."""
    resync_seconds: float = Field(default=30.0, ge=0.1, le=3600)
    """Longest time between two reconciles of a resource with nothing in progress."""
    min_interval_seconds: float = Field(default=0.2, ge=0.05, le=60)
    """Shortest time between two reconciles of one resource (floor of every requeue)."""

    analysis_interval: str | None = Field(default=None, pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
    """Default `spec.analysis.interval` for ModelDeployments that leave it out."""
    analysis_min_requests: int | None = Field(default=None, ge=0)
    """Default `spec.analysis.minRequests` for ModelDeployments that leave it out."""

    server_fault_injection: bool = False
    """Start every model server with `--enable-fault-injection` (`POST /admin/faults` on
    its port): for chaos drills and tests of rollbacks, never for production traffic."""

    trainer_backoff_limit: int = Field(default=0, ge=0, le=10)
    """`backoffLimit` of each Job: retries are attempts counted by the TrainingJob itself."""
    job_ttl_seconds: int = Field(default=3600, ge=0)
    """`ttlSecondsAfterFinished` of finished Jobs (they are also owned by their resource)."""

    standalone: bool = False
    """Run without peering (no standby replica coordination)."""
    peering_name: str = "pilotage"
    """Name of the KopfPeering object replicas coordinate through."""
    priority: int | None = None
    """Peering priority of this replica; the highest one is active, others stand by.
    Unset: each replica draws a random one (equal priorities would pause all replicas)."""
    kubeconfig: str | None = None
    """Kubeconfig path; in-cluster credentials (then `$KUBECONFIG`, `~/.kube/config`) when unset."""
    liveness_port: int | None = Field(default=8081, ge=1, le=65535)
    """Port of kopf's liveness endpoint `/healthz` (None: off)."""

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("artifact_uri")
    @classmethod
    def _artifact_scheme(cls, value: str) -> str:
        if not value.startswith(("pvc://", "s3://")):
            raise ValueError("use pvc://CLAIM/path or s3://bucket/prefix (pods must reach it)")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return f"PILOTAGE_{field.upper()}"


def load_settings(path: Path | None = None, **overrides: Any) -> OperatorSettings:
    """Settings from the environment, over the YAML file at ``path``, over ``overrides``."""
    values: dict[str, Any] = dict(overrides)
    if path is not None:
        try:
            loaded = safe_load(read_limited(path, max_manifest_bytes())) or {}
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise SettingsError(f"{path}: cannot read settings: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: settings must be a mapping of field: value")
        values = {**{k.replace("-", "_"): v for k, v in loaded.items()}, **values}
    try:
        return OperatorSettings(**values)
    except ValidationError as exc:
        problems = [
            f"{env_name(str(err['loc'][0])) if err['loc'] else 'settings'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError("; ".join(problems)) from exc
