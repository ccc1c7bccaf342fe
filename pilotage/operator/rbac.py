"""The Kubernetes API calls the operator makes, as data for the Helm chart's RBAC.

`RULES` covers both the operator's own calls (`pilotage.operator.kube.Kube`, which
records every call it makes) and kopf's (watching, finalizers/annotations, peering,
posting Events). tests/operator/test_story.py runs the whole story against the emulated
API server and fails when any request it saw — from kopf or the operator — is not
covered here, so the list cannot silently fall behind the code.

`rules(clusterwide)` gives the rules in Role/ClusterRole form. Peering objects are
`clusterkopfpeerings` when the operator watches the whole cluster and `kopfpeerings`
in each watched namespace otherwise (kopf's CRDs for both ship with the chart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GROUP = "pilotage.dev"
PILOTAGE_KINDS = ("datasets", "trainingjobs", "modeldeployments", "driftmonitors")
WATCH = ("get", "list", "watch")


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    cluster_scoped: bool = False
    """Needed only when the operator runs cluster-wide (then in a ClusterRole)."""

    def covers(self, group: str, resource: str, verb: str) -> bool:
        return group in self.api_groups and resource in self.resources and verb in self.verbs

    def as_policy_rule(self) -> dict[str, Any]:
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


RULES: tuple[Rule, ...] = (
    Rule(
        (GROUP,),
        PILOTAGE_KINDS,
        (*WATCH, "patch"),
        "kopf watches the four kinds and patches finalizers and its pilotage.dev/ annotations; "
        "the reconcilers read them",
    ),
    Rule(
        (GROUP,),
        tuple(f"{k}/status" for k in PILOTAGE_KINDS),
        ("patch",),
        "status is written through the status subresource only",
    ),
    Rule((GROUP,), ("trainingjobs",), ("create",), "a DriftMonitor retrain creates a TrainingJob"),
    Rule(
        ("batch",),
        ("jobs",),
        (*WATCH, "create", "delete"),
        "one Job per training/profiling attempt; finished Jobs wake their owner",
    ),
    Rule(
        ("",),
        ("pods",),
        ("list",),
        "the trainer's termination message; ready router pods to push routes to",
    ),
    Rule(
        ("apps",),
        ("deployments",),
        (*WATCH, "create", "patch", "delete"),
        "model servers and routers",
    ),
    Rule(
        ("",),
        ("services",),
        ("get", "create", "patch", "delete"),
        "one Service per model version and per router",
    ),
    Rule(
        ("",),
        ("configmaps",),
        ("get", "create", "patch", "delete"),
        "routing tables and the manifests a run reads",
    ),
    Rule(
        ("",),
        ("secrets",),
        ("get", "create"),
        "the router admin token (created once, never listed)",
    ),
    Rule(
        ("",),
        ("events",),
        ("create",),
        "Events for every transition (and kopf's own warnings); both only POST core v1 Events",
    ),
    Rule(
        ("kopf.dev",),
        ("kopfpeerings",),
        ("list", "watch", "patch"),
        "peering between replicas, namespaced mode",
    ),
    Rule(
        ("kopf.dev",),
        ("clusterkopfpeerings",),
        ("list", "watch", "patch"),
        "peering between replicas, cluster-wide mode",
        cluster_scoped=True,
    ),
    Rule(
        ("apiextensions.k8s.io",),
        ("customresourcedefinitions",),
        ("list", "watch"),
        "kopf watches CRDs for resources that appear later (namespaced mode does without)",
        cluster_scoped=True,
    ),
)


def rules(clusterwide: bool) -> list[dict[str, Any]]:
    """PolicyRules for a ClusterRole (cluster-wide) or a per-namespace Role."""
    return [
        r.as_policy_rule()
        for r in RULES
        if clusterwide or not r.cluster_scoped
        if not (clusterwide and r.resources == ("kopfpeerings",))
    ]


def missing_rules(calls: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The (group, resource, verb) calls no rule covers (empty when RBAC is complete)."""
    return sorted({c for c in calls if not any(r.covers(*c) for r in RULES)})
