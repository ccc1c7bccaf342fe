"""A call the operator's RBAC does not allow (the emulated API server answers 403 as the
real one does): the resource's Ready condition says Forbidden and names the call, one
Warning Event, and the condition goes once the permission is back — also on a settled
resource whose reconciler does not recompute its conditions."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call
from tests.operator.manifests import BASE, NS, dataset
from tests.operator.test_invalid_spec import reconciler_for

DATASETS = "pilotage.dev/v1alpha1/datasets"


def ready(cluster: Cluster) -> dict[str, Any]:
    body = cluster.get(DATASETS, NS, "iris")
    assert body is not None
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def forbidden_events(cluster: Cluster) -> list[dict[str, Any]]:
    return [e for e in cluster.list("v1/events", NS) if e["reason"] == "Forbidden"]


async def test_a_forbidden_action_is_named_in_ready_and_clears_when_allowed(
    cluster: Cluster,
) -> None:
    await apply_crds(cluster)
    await cluster_call(cluster, "POST", f"{BASE}/datasets", dataset())
    reconciler = reconciler_for(cluster)
    cluster.forbid = {("POST", "jobs")}
    for _ in range(3):
        assert await asyncio.to_thread(reconciler.reconcile, "datasets", NS, "iris") == 5.0
    condition = ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", "Forbidden")
    assert f"may not create batch/jobs in namespace {NS}" in condition["message"]
    assert "jobs is forbidden" in condition["message"]  # the API server's own words
    assert cluster.list("batch/v1/jobs", NS) == []
    assert len(forbidden_events(cluster)) == 1

    cluster.forbid = set()
    await asyncio.to_thread(reconciler.reconcile, "datasets", NS, "iris")
    assert ready(cluster)["reason"] == "Profiling"
    assert len(cluster.list("batch/v1/jobs", NS)) == 1


async def test_a_forbidden_read_of_a_settled_resource_puts_its_conditions_back(
    cluster: Cluster,
) -> None:
    await apply_crds(cluster)
    await cluster_call(cluster, "POST", f"{BASE}/datasets", dataset())
    settled = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Profiled",
            "message": "150 rows, 5 columns, 0 finding(s)",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    status = {"phase": "Ready", "run": "iris-profile-g1", "observedGeneration": 1}
    await cluster_call(
        cluster,
        "PATCH",
        f"{BASE}/datasets/iris/status",
        {"status": {**status, "conditions": settled}},
    )
    reconciler = reconciler_for(cluster)
    cluster.forbid = {("GET", "jobs")}
    await asyncio.to_thread(reconciler.reconcile, "datasets", NS, "iris")
    condition = ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", "Forbidden")
    assert f"may not get batch/jobs in namespace {NS}" in condition["message"]

    cluster.forbid = set()
    await asyncio.to_thread(reconciler.reconcile, "datasets", NS, "iris")
    body = cluster.get(DATASETS, NS, "iris")
    assert body is not None and body["status"]["conditions"] == settled
    assert body["status"]["phase"] == "Ready"


async def test_a_namespace_being_deleted_is_not_reported_as_forbidden(
    cluster: Cluster, caplog: Any
) -> None:
    """The API server refuses to create anything in a namespace being deleted with a
    403; that is not the operator's RBAC: no Forbidden condition, no Event, no warning
    (the resource goes with its namespace)."""
    await apply_crds(cluster)
    await cluster_call(cluster, "POST", f"{BASE}/datasets", dataset())
    reconciler = reconciler_for(cluster)
    cluster.terminating = {NS}
    with caplog.at_level(logging.INFO, logger="pilotage.operator"):
        for _ in range(2):
            assert await asyncio.to_thread(reconciler.reconcile, "datasets", NS, "iris") == 5.0
    assert ready(cluster).get("reason") != "Forbidden"
    assert cluster.list("batch/v1/jobs", NS) == []
    assert cluster.list("v1/events", NS) == []
    assert not [r for r in caplog.records if "403" in r.getMessage()], caplog.text
