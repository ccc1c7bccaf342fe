"""`pilotage promote|abort|retry|retrain|refresh --kube`: patch an action annotation on a
cluster (merge patch through the current kubeconfig)."""

from __future__ import annotations

from typing import Any

from pilotage.api import GROUP, VERSION
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.api.resource import Resource


def annotate_deployment(
    name: str, namespace: str, annotation: str, value: str, context: str | None = None
) -> str:
    """Merge-patch a ModelDeployment's ``metadata.annotations[annotation] = value``."""
    return annotate(ModelDeployment, name, namespace, annotation, value, context)


def annotate(
    kind: type[Resource],
    name: str,
    namespace: str,
    annotation: str,
    value: str,
    context: str | None = None,
    in_cluster: bool = False,
) -> str:
    """Merge-patch ``metadata.annotations[annotation] = value``; returns where it was done.
    ``in_cluster``: the pod's service account (the dashboard the chart deploys)."""
    from pilotage.local.errors import CliError, Forbidden

    try:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        from pilotage.kubeconnection import (
            ConnectionError_,
            client_configuration,
            kubeconfig_configuration,
        )
    except ImportError as exc:
        raise CliError("--kube needs the kubernetes client: install pilotage[operator]") from exc
    # Not config.new_client_from_config: kubernetes 36.0.0 would send no bearer token.
    try:
        configuration = client_configuration() if in_cluster else kubeconfig_configuration(context)
        api_client = client.ApiClient(configuration)
    except ConnectionError_ as exc:
        raise CliError(str(exc)) from exc
    api = client.CustomObjectsApi(api_client)
    body: dict[str, Any] = {"metadata": {"annotations": {annotation: value}}}
    try:
        api.patch_namespaced_custom_object(GROUP, VERSION, namespace, kind.PLURAL, name, body)
    except ApiException as exc:
        if exc.status == 404:
            raise CliError(
                f"{kind.KIND} {name!r} not found in namespace {namespace!r} "
                f"(or the CRD is not installed)"
            ) from exc
        if exc.status == 403:
            raise Forbidden(
                f"forbidden: the kubeconfig's user may not patch {kind.PLURAL} "
                f"in namespace {namespace!r} (HTTP 403)"
            ) from exc
        raise CliError(f"the API server refused the patch: HTTP {exc.status} {exc.reason}") from exc
    except OSError as exc:
        raise CliError(f"cannot reach the API server: {exc}") from exc
    finally:
        api_client.close()
    host = getattr(api_client.configuration, "host", "cluster")
    return f"{host}, namespace {namespace}"
