"""Assembles the operator: settings + credentials → kopf registry, kopf settings, run args.

The CLI runs it with ``kopf.run``; tests run the same assembly with ``kopf.operator``
in their own event loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes import client as k8s

from pilotage.kubeconnection import connection_info
from pilotage.operator.handlers import Scheduler, build_registry, kopf_settings
from pilotage.operator.kube import Kube
from pilotage.operator.platform import Addresses
from pilotage.operator.reconcile import Clock, Reconciler, utc_now
from pilotage.operator.settings import OperatorSettings


@dataclass
class OperatorApp:
    settings: OperatorSettings
    kube: Kube
    reconciler: Reconciler
    registry: kopf.OperatorRegistry
    kopf_settings: kopf.OperatorSettings
    priority: int

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``kopf.run`` / ``kopf.operator``."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "registry": self.registry,
            "settings": self.kopf_settings,
            "standalone": s.standalone,
            "priority": self.priority,
            "clusterwide": s.clusterwide,
            "namespaces": list(s.namespaces),
        }
        if not s.standalone:  # kopf makes peering mandatory once it is given a name
            kwargs["peering_name"] = s.peering_name
        if s.liveness_port:
            kwargs["liveness_endpoint"] = f"http://0.0.0.0:{s.liveness_port}/healthz"
        return kwargs


def build_operator(
    settings: OperatorSettings,
    cfg: k8s.Configuration,
    clock: Clock = utc_now,
    addresses: Addresses | None = None,
) -> OperatorApp:
    """``addresses``: how Services and pods are reached (default: cluster DNS and pod IPs)."""
    kube = Kube(k8s.ApiClient(cfg), timeout=max(10.0, settings.http_timeout_seconds))
    reconciler = Reconciler(kube, settings, clock, addresses)
    registry = build_registry(Scheduler(reconciler, settings))

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(cfg)

    # Replicas of one Deployment share their settings: without an explicit priority,
    # each draws its own, so the highest is active and the others stand by (kopf pauses
    # every replica when two have the same priority).
    priority = settings.priority if settings.priority is not None else random.randint(1, 1_000_000)
    return OperatorApp(
        settings, kube, reconciler, registry, kopf_settings(settings, priority), priority
    )
