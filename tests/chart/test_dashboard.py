"""The chart's optional dashboard: off by default; read-only RBAC unless its buttons are
enabled; arguments the `pilotage dashboard` command accepts; a Service that selects only
the dashboard pod, and an operator selector that never matches it."""

from __future__ import annotations

import pytest

from pilotage.dashboard.cli import parser
from tests.chart.calls import granted
from tests.chart.render import NAMESPACE, Obj, of_kind, render

pytestmark = pytest.mark.xdist_group("chart")

ON = ("--set", "dashboard.enabled=true")
READ = {"get", "list", "watch"}
KINDS = {"datasets", "trainingjobs", "modeldeployments", "driftmonitors"}


def dashboard_objects(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["metadata"]["name"].endswith("-dashboard")]


def test_off_by_default() -> None:
    assert dashboard_objects(render()) == []


def _container(objects: list[Obj]) -> Obj:
    (deployment,) = [d for d in of_kind(objects, "Deployment") if d in dashboard_objects(objects)]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("read_only", [True, False])
def test_rbac_reads_unless_the_buttons_are_enabled(read_only: bool) -> None:
    objects = render(*ON, "--set", f"dashboard.readOnly={str(read_only).lower()}")
    (role,) = [r for r in of_kind(objects, "ClusterRole") if r in dashboard_objects(objects)]
    grants = granted(role["rules"])
    reads = {("pilotage.dev", k, v) for k in KINDS for v in READ} | {("", "events", "list")}
    patches = {
        ("pilotage.dev", k, "patch") for k in ("datasets", "modeldeployments", "driftmonitors")
    }
    assert grants == (reads if read_only else reads | patches)
    (binding,) = [
        b for b in of_kind(objects, "ClusterRoleBinding") if b in dashboard_objects(objects)
    ]
    (account,) = [a for a in of_kind(objects, "ServiceAccount") if a in dashboard_objects(objects)]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    args = parser().parse_args(_container(objects)["args"][1:])
    assert args.kube and args.in_cluster and args.all_namespaces and args.host == "0.0.0.0"
    assert args.read_only is read_only


def test_namespaced_mode_reads_only_the_watched_namespaces() -> None:
    objects = render(*ON, "--set", "watch.clusterWide=false", "--set", "watch.namespaces={a,b}")
    mine = dashboard_objects(objects)
    assert [r for r in of_kind(objects, "ClusterRole") if r in mine] == []
    roles = [r for r in of_kind(objects, "Role") if r in mine]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    args = parser().parse_args(_container(objects)["args"][1:])
    assert args.namespace == ["a", "b"] and not args.all_namespaces


def test_the_service_selects_the_dashboard_and_the_operator_never_does() -> None:
    objects = render(*ON)
    (service,) = [s for s in of_kind(objects, "Service") if s in dashboard_objects(objects)]
    mine = dashboard_objects(objects)
    (dashboard,) = [d for d in of_kind(objects, "Deployment") if d in mine]
    (operator,) = [d for d in of_kind(objects, "Deployment") if d not in mine]
    pod_labels = dashboard["spec"]["template"]["metadata"]["labels"]
    operator_labels = operator["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert selects(service["spec"]["selector"], pod_labels)
    assert not selects(service["spec"]["selector"], operator_labels)
    assert not selects(operator["spec"]["selector"]["matchLabels"], pod_labels)
    port = _container(objects)["ports"][0]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert _container(objects)["image"].split("/")[-1].startswith("pilotage-operator:")
