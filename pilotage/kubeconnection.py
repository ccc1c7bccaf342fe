"""Credentials for a Kubernetes client: one kubernetes Configuration shared by kopf and the
operator's client, and the one the command line (`--kube`) and the dashboard use.

Outside `pilotage.operator` so that the embedded shell (`pilotage.local`) and the
dashboard can reach a cluster without depending on the operator.

kubernetes 36.0.0 loaders store the bearer token under ``api_key['authorization']`` while
its ApiClient only sends ``api_key['BearerToken']`` (fixed upstream in 36.0.1, which
the boto3 dateutil pin keeps out): the token is mirrored here, also after each refresh
of a rotated in-cluster token. `pilotage promote|abort|retry --kube` uses the same
loader (kopf is imported only by `connection_info`, so the CLI does not load it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

if TYPE_CHECKING:
    import kopf


class ConnectionError_(Exception):
    """No usable credentials (neither in-cluster nor a kubeconfig)."""


def _mirror_token(cfg: k8s.Configuration) -> None:
    token = cfg.api_key.get("authorization")
    if token and cfg.api_key.get("BearerToken") != token:
        cfg.api_key["BearerToken"] = token


def client_configuration(kubeconfig: str | None = None) -> k8s.Configuration:
    """In-cluster service account first, then the kubeconfig (``kubeconfig`` or default)."""
    cfg = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=cfg)
            except ConfigException:
                k8s_config.load_kube_config(client_configuration=cfg)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise ConnectionError_(
            f"no Kubernetes credentials (in-cluster or kubeconfig): {exc}"
        ) from exc
    return _with_token_mirror(cfg)


def kubeconfig_configuration(context: str | None = None) -> k8s.Configuration:
    """The kubeconfig only (``$KUBECONFIG`` or ``~/.kube/config``), optionally one context:
    what a command-line client on a workstation uses."""
    cfg = k8s.Configuration()
    try:
        k8s_config.load_kube_config(context=context, client_configuration=cfg)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise ConnectionError_(f"cannot load the kubeconfig: {exc}") from exc
    return _with_token_mirror(cfg)


def _with_token_mirror(cfg: k8s.Configuration) -> k8s.Configuration:
    hook = cfg.refresh_api_key_hook

    def refresh(conf: k8s.Configuration) -> None:
        if hook is not None:
            hook(conf)
        _mirror_token(conf)

    cfg.refresh_api_key_hook = refresh
    _mirror_token(cfg)
    return cfg


def connection_info(cfg: k8s.Configuration) -> kopf.ConnectionInfo:
    """The same credentials, for kopf's own API client."""
    import kopf

    if cfg.refresh_api_key_hook is not None:
        cfg.refresh_api_key_hook(cfg)
    header: str | None = cfg.api_key.get("BearerToken")
    scheme: str | None = None
    token: str | None = None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    kwargs: dict[str, Any] = {}
    if cfg.ssl_ca_cert:
        kwargs["ca_path"] = cfg.ssl_ca_cert
    if cfg.cert_file:
        kwargs["certificate_path"] = cfg.cert_file
    if cfg.key_file:
        kwargs["private_key_path"] = cfg.key_file
    return kopf.ConnectionInfo(
        server=cfg.host,
        insecure=not cfg.verify_ssl,
        scheme=scheme,
        token=token,
        username=cfg.username or None,
        password=cfg.password or None,
        **kwargs,
    )
