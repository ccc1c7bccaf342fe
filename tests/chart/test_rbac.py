"""The chart's RBAC grants every API call the operator's code makes, and nothing more.

The calls come from the code (tests/chart/calls.py: the operator's Kube calls parsed
from its source, kopf's calls from the handlers it registers), never from rbac.py, which
the chart's rules are generated from: the two are checked against each other here.
"""

from __future__ import annotations

import pytest

from tests.chart.calls import (
    CLUSTER_SCOPED,
    Call,
    granted,
    kopf_calls,
    kopf_handlers,
    operator_calls,
)
from tests.chart.render import of_kind, render

pytestmark = pytest.mark.xdist_group("chart")

MODES = {
    "cluster-wide": ("--set", "watch.clusterWide=true"),
    "cluster-wide-standalone": (
        "--set",
        "watch.clusterWide=true",
        "--set",
        "operator.peering.enabled=false",
    ),
    "namespaced": ("--set", "watch.clusterWide=false", "--set", "watch.namespaces={a,b}"),
}


def required_and_optional(mode: str) -> tuple[set[Call], set[Call]]:
    clusterwide = mode.startswith("cluster-wide")
    peering = not mode.endswith("standalone")
    kopf = kopf_calls(kopf_handlers(), clusterwide=clusterwide, peering=peering)
    return operator_calls() | kopf.required, kopf.optional_cluster_scoped


def test_the_scan_finds_the_calls_it_must() -> None:
    calls = operator_calls()
    # One of each way a resource reaches a Kube call: a constant, a parameter of
    # `ensure`, and the reconciler's kinds table.
    assert ("batch", "jobs", "create") in calls
    assert ("", "services", "patch") in calls
    assert ("pilotage.dev", "modeldeployments/status", "patch") in calls
    assert ("pilotage.dev", "datasets", "get") in calls


@pytest.mark.parametrize("mode", sorted(MODES))
def test_rbac_covers_every_call_and_nothing_more(mode: str) -> None:
    objects = render(*MODES[mode])
    clusterwide = mode.startswith("cluster-wide")
    roles = of_kind(objects, "ClusterRole" if clusterwide else "Role")
    assert of_kind(objects, "Role" if clusterwide else "ClusterRole") == []
    assert roles
    required, optional = required_and_optional(mode)
    for role in roles:
        grants = granted(role["rules"])
        missing = required - grants
        if not clusterwide:
            missing = {c for c in missing if (c[0], c[1]) not in CLUSTER_SCOPED}
        assert missing == set(), f"{role['metadata'].get('namespace')}: not granted: {missing}"
        extra = grants - required - optional
        assert extra == set(), f"granted but never called: {sorted(extra)}"
        if not clusterwide:
            scoped = {c for c in grants if (c[0], c[1]) in CLUSTER_SCOPED}
            assert scoped == set(), "a Role cannot grant cluster-scoped resources"


def test_namespaced_mode_has_a_role_and_binding_in_each_watched_namespace() -> None:
    objects = render(*MODES["namespaced"])
    assert sorted(r["metadata"]["namespace"] for r in of_kind(objects, "Role")) == ["a", "b"]
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    (account,) = of_kind(objects, "ServiceAccount")
    for binding in bindings:
        (subject,) = binding["subjects"]
        assert subject["name"] == account["metadata"]["name"]
        assert subject["namespace"] == account["metadata"]["namespace"]


def test_standalone_has_no_peering_object_and_no_peering_grant() -> None:
    objects = render(*MODES["cluster-wide-standalone"])
    (role,) = of_kind(objects, "ClusterRole")
    assert of_kind(objects, "ClusterKopfPeering") == []
    assert not any(group == "kopf.dev" for group, _, _ in granted(role["rules"]))


def test_no_other_way_to_reach_the_api_server() -> None:
    """Everything goes through Kube: no generated *Api classes, no raw call_api."""
    import ast

    from tests.chart.calls import OPERATOR_DIR

    for path in sorted(OPERATOR_DIR.glob("*.py")):
        if path.name == "kube.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                is_generated_api = node.attr.endswith("Api") and node.attr != "ApiClient"
                assert node.attr != "call_api" and not is_generated_api, (
                    f"{path.name}:{node.lineno}: {node.attr} bypasses Kube"
                )
