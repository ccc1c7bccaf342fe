"""Names the operator writes on the cluster. These are an API: they must never change.

* finalizer ``pilotage.dev/finalizer``;
* annotations ``pilotage.dev/*`` (manual controls come from ``pilotage.control.common``);
* labels ``app.kubernetes.io/*`` and ``pilotage.dev/*`` on every child;
* child object names derived from the owner's name (``dns_name`` keeps them ≤ 63 chars).
"""

from __future__ import annotations

import importlib.metadata
import re

from pilotage.api.common import GROUP
from pilotage.control.common import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_REFRESH,
    ANNOTATION_RETRAIN,
    ANNOTATION_RETRY,
    LABEL_MONITOR,
    dns_name,
)

try:
    PILOTAGE_VERSION = importlib.metadata.version("pilotage")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
    PILOTAGE_VERSION = "0.1.0"

FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_PREFIX = GROUP
"""kopf keeps its progress and last-handled spec under annotations with this prefix
(`pilotage.dev/last-handled-configuration`, `pilotage.dev/<handler-id>`), never in status."""
ANNOTATION_MODEL_VERSION = f"{GROUP}/model-version"
"""The exact model version on a server Deployment (its label may be shortened)."""
ANNOTATION_ROUTES_REVISION = f"{GROUP}/routes-revision"
ANNOTATION_ROUTES_CHECKSUM = f"{GROUP}/routes-checksum"
MANUAL_ANNOTATIONS = (ANNOTATION_PROMOTE, ANNOTATION_ABORT, ANNOTATION_RETRY, ANNOTATION_REFRESH)

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_DEPLOYMENT = f"{GROUP}/deployment"
LABEL_MODEL_VERSION = f"{GROUP}/model-version"
LABEL_ROLE = f"{GROUP}/role"
LABEL_OWNER_KIND = f"{GROUP}/owner-kind"
LABEL_OWNER_NAME = f"{GROUP}/owner-name"
LABEL_RUN = f"{GROUP}/run"
LABEL_PURPOSE = f"{GROUP}/purpose"
MANAGER = "pilotage-operator"

ROLE_SERVER = "server"
ROLE_ROUTER = "router"
ROLE_TRAINER = "trainer"

__all__ = [
    "ANNOTATION_RETRAIN",
    "LABEL_MONITOR",
]

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def label_value(text: str) -> str:
    """A string made valid as a label value (≤ 63 chars, alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE.sub("-", text)
    return dns_name(cleaned).strip("-_.")[:63].strip("-_.")


def server_name(deployment: str, version: str) -> str:
    """Deployment and Service of one model version: `<deployment>-<version>`."""
    return dns_name(deployment, dns_label(version))


def router_name(deployment: str) -> str:
    """Deployment and Service of the router: `<deployment>-router` (the endpoint)."""
    return dns_name(deployment, "router")


def routes_configmap_name(deployment: str) -> str:
    return dns_name(deployment, "routes")


def router_token_secret_name(deployment: str) -> str:
    return dns_name(deployment, "router-admin")


def manifests_configmap_name(run: str) -> str:
    return dns_name(run, "manifests")


def dns_label(text: str) -> str:
    """Lower-case RFC 1123 label from arbitrary text (model versions may hold `_` or `.`)."""
    return re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-") or "x"
