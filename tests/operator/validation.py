"""Checks every object the operator creates must pass: the official OpenAPI schema of a
fixed Kubernetes version, and the restricted Pod Security Standard."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from pilotage.operator.pss import pod_spec_of, restricted_violations

KUBERNETES_VERSION = "1.30.0"


def schema_errors(obj: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        return [f"{obj.get('kind')} {obj['metadata'].get('name')}: {path}: {exc.message}"]
    return []


def problems(obj: dict[str, Any]) -> list[str]:
    """Schema errors plus restricted-PSS violations of one object."""
    out = schema_errors(obj)
    pod_spec = pod_spec_of(obj)
    if pod_spec is not None:
        name = f"{obj['kind']} {obj['metadata'].get('name')}"
        out += [f"{name}: {v}" for v in restricted_violations(pod_spec)]
    return out
