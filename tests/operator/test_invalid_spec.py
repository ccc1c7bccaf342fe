"""A resource the models reject (past a CRD that did not): the operator's InvalidSpec path
on the emulated API server, which prunes undeclared status fields like a real one."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client as k8s

from pilotage.operator.kube import Kube
from pilotage.operator.reconcile import Reconciler
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import api_url
from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call
from tests.operator.manifests import BASE, NS, dataset, training_job


def reconciler_for(cluster: Cluster) -> Reconciler:
    settings = OperatorSettings(standalone=True, liveness_port=None)
    return Reconciler(Kube(k8s.ApiClient(k8s.Configuration(host=api_url(cluster)))), settings)


def invalid_spec_events(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in cluster.list("v1/events", NS)
        if e["involvedObject"]["name"] == name and e["reason"] == "InvalidSpec"
    ]


async def test_an_invalid_spec_is_one_event_and_one_status_write_however_often_reconciled(
    cluster: Cluster,
) -> None:
    await apply_crds(cluster)
    ds = dataset()
    ds["spec"]["source"]["uri"] = "ftp://example.com/iris.csv"  # the models refuse ftp://
    tj = training_job("iris-v1")
    tj["spec"]["backoffLimit"] = -1  # the models refuse a negative backoffLimit
    await cluster_call(cluster, "POST", f"{BASE}/datasets", ds)
    await cluster_call(cluster, "POST", f"{BASE}/trainingjobs", tj)
    reconciler = reconciler_for(cluster)
    for plural, name in (("datasets", "iris"), ("trainingjobs", "iris-v1")):
        for _ in range(3):
            assert await asyncio.to_thread(reconciler.reconcile, plural, NS, name) is None
        body = cluster.get(f"pilotage.dev/v1alpha1/{plural}", NS, name)
        assert body is not None
        ready = body["status"]["conditions"][0]
        assert (ready["type"], ready["status"], ready["reason"]) == (
            "Ready",
            "False",
            "InvalidSpec",
        )
        assert "spec." in ready["message"]
        assert [c["type"] for c in body["status"]["conditions"]] == ["Ready", "Stalled"]
        assert body["status"]["observedGeneration"] == 1
        assert len(invalid_spec_events(cluster, name)) == 1, plural
        written = body["metadata"]["resourceVersion"]
        await asyncio.to_thread(reconciler.reconcile, plural, NS, name)
        again = cluster.get(f"pilotage.dev/v1alpha1/{plural}", NS, name)
        assert again is not None and again["metadata"]["resourceVersion"] == written
