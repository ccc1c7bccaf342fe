"""Guard tests of the emulated API server: each checks one behaviour kopf or the operator
relies on. When a kmock/kopf/kubernetes upgrade breaks the subclass, these fail first."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import aiohttp
import kopf
import pytest

from tests.operator.conftest import api_url, eventually, running_kopf
from tests.operator.emulator import Cluster

PINNED = {"kmock": "0.8", "kopf": "1.45.2", "kubernetes": "36.0.0"}

WIDGETS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "properties": {"seen": {"type": "integer"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}
WIDGETS = "/apis/example.dev/v1/namespaces/default/widgets"
MERGE = {"Content-Type": "application/merge-patch+json"}


async def call(
    cluster: Cluster, method: str, path: str, body: Any = None, headers: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            api_url(cluster) + path,
            data=None if body is None else json.dumps(body),
            headers=headers or {"Content-Type": "application/json"},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def with_widgets(cluster: Cluster) -> None:
    status, _ = await call(
        cluster, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGETS_CRD
    )
    assert status == 201


def test_versions_are_the_pinned_ones() -> None:
    """The emulator subclass touches kmock internals: an upgrade must be deliberate."""
    for package, version in PINNED.items():
        assert importlib.metadata.version(package) == version, package


async def test_create_fills_metadata_and_drops_status(cluster: Cluster) -> None:
    await with_widgets(cluster)
    status, obj = await call(
        cluster,
        "POST",
        WIDGETS,
        {"metadata": {"generateName": "w-"}, "spec": {"size": 1}, "status": {"seen": 9}},
    )
    assert status == 201
    meta = obj["metadata"]
    assert meta["name"].startswith("w-") and meta["namespace"] == "default"
    assert meta["uid"] and meta["generation"] == 1 and meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) > 0
    assert "status" not in obj


async def test_status_subresource_is_separate_and_generation_counts_spec(cluster: Cluster) -> None:
    await with_widgets(cluster)
    _, obj = await call(cluster, "POST", WIDGETS, {"metadata": {"name": "w"}, "spec": {"size": 1}})
    _, obj = await call(
        cluster, "PATCH", WIDGETS + "/w", {"spec": {"size": 2}, "status": {"seen": 1}}, MERGE
    )
    assert obj["spec"] == {"size": 2} and "status" not in obj
    assert obj["metadata"]["generation"] == 2
    _, obj = await call(
        cluster, "PATCH", WIDGETS + "/w/status", {"spec": {"size": 3}, "status": {"seen": 1}}, MERGE
    )
    assert obj["spec"] == {"size": 2} and obj["status"] == {"seen": 1}
    assert obj["metadata"]["generation"] == 2
    before = obj["metadata"]["resourceVersion"]
    _, obj = await call(cluster, "PATCH", WIDGETS + "/w/status", {"status": {"seen": 1}}, MERGE)
    assert obj["metadata"]["resourceVersion"] == before, "a no-op write must not bump it"


async def test_undeclared_fields_are_pruned(cluster: Cluster) -> None:
    await with_widgets(cluster)
    await call(cluster, "POST", WIDGETS, {"metadata": {"name": "w"}, "spec": {"size": 1}})
    _, obj = await call(
        cluster, "PATCH", WIDGETS + "/w/status", {"status": {"seen": 1, "bogus": 2}}, MERGE
    )
    assert obj["status"] == {"seen": 1}


async def test_failed_json_patch_test_is_422_and_stale_rv_is_409(cluster: Cluster) -> None:
    await with_widgets(cluster)
    await call(cluster, "POST", WIDGETS, {"metadata": {"name": "w"}, "spec": {"size": 1}})
    test_op = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}]
    status, _ = await call(
        cluster, "PATCH", WIDGETS + "/w", test_op, {"Content-Type": "application/json-patch+json"}
    )
    assert status == 422
    status, _ = await call(
        cluster,
        "PUT",
        WIDGETS + "/w",
        {"metadata": {"name": "w", "resourceVersion": "0"}, "spec": {"size": 5}},
    )
    assert status == 409


async def test_selectors_on_list(cluster: Cluster) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        labels = {"tier": tier} if tier else {}
        await call(cluster, "POST", path, {"metadata": {"name": name, "labels": labels}})
    for selector, expected in (
        ("tier=web", {"a"}),
        ("tier!=web", {"b", "c"}),
        ("tier in (web,db)", {"a", "b"}),
        ("tier", {"a", "b"}),
        ("!tier", {"c"}),
    ):
        _, listing = await call(cluster, "GET", f"{path}?labelSelector={selector}")
        assert {o["metadata"]["name"] for o in listing["items"]} == expected, selector
    _, listing = await call(cluster, "GET", f"{path}?fieldSelector=metadata.name=b")
    assert [o["metadata"]["name"] for o in listing["items"]] == ["b"]


async def test_watch_resumes_from_resource_version_and_times_out(cluster: Cluster) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    await call(cluster, "POST", path, {"metadata": {"name": "old"}})
    _, listing = await call(cluster, "GET", path)
    since = listing["metadata"]["resourceVersion"]
    await call(cluster, "POST", path, {"metadata": {"name": "new"}})
    url = f"{api_url(cluster)}{path}?watch=true&resourceVersion={since}&timeoutSeconds=1"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        lines = [json.loads(line) async for line in resp.content if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "new")]


async def test_finalizers_and_garbage_collection(cluster: Cluster) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    _, owner = await call(
        cluster, "POST", path, {"metadata": {"name": "owner", "finalizers": ["x.dev/f"]}}
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    await call(cluster, "POST", path, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    status, obj = await call(cluster, "DELETE", path + "/owner")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    assert cluster.get("v1/configmaps", "default", "child") is not None
    await call(cluster, "PATCH", path + "/owner", {"metadata": {"finalizers": None}}, MERGE)
    assert cluster.get("v1/configmaps", "default", "owner") is None
    assert cluster.get("v1/configmaps", "default", "child") is None


async def test_namespaces_path(cluster: Cluster) -> None:
    status, listing = await call(cluster, "GET", "/api/v1/namespaces")
    assert status == 200 and [n["metadata"]["name"] for n in listing["items"]] == ["default"]
    status, ns = await call(cluster, "GET", "/api/v1/namespaces/default")
    assert status == 200 and ns["metadata"]["name"] == "default"


@pytest.mark.parametrize("namespaced", [False, True])
async def test_kopf_runs_a_handler_once_per_change(cluster: Cluster, namespaced: bool) -> None:
    """A trivial kopf operator: finalizer added, status patched, one call per spec change."""
    await with_widgets(cluster)
    registry = kopf.OperatorRegistry()
    calls: list[int] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api_url(cluster))

    @kopf.on.create("example.dev", "v1", "widgets", registry=registry)
    @kopf.on.update("example.dev", "v1", "widgets", registry=registry, field="spec")
    def reconcile(spec: Any, patch: kopf.Patch, **_: Any) -> None:
        calls.append(spec["size"])
        patch.status["seen"] = spec["size"]

    @kopf.on.delete("example.dev", "v1", "widgets", registry=registry)
    def deleted(**_: Any) -> None:
        calls.append(0)

    scope: dict[str, Any] = {"clusterwide": False, "namespaces": ["default"]} if namespaced else {}
    async with running_kopf(registry, **scope):
        await call(cluster, "POST", WIDGETS, {"metadata": {"name": "w"}, "spec": {"size": 1}})
        await eventually(
            lambda: (
                (cluster.get("example.dev/v1/widgets", "default", "w") or {})
                .get("status", {})
                .get("seen")
                == 1
            ),
            what="status.seen == 1",
        )
        obj = cluster.get("example.dev/v1/widgets", "default", "w")
        assert obj and obj["metadata"].get("finalizers")
        await call(cluster, "PATCH", WIDGETS + "/w", {"spec": {"size": 2}}, MERGE)
        await eventually(
            lambda: (
                (cluster.get("example.dev/v1/widgets", "default", "w") or {})
                .get("status", {})
                .get("seen")
                == 2
            ),
            what="status.seen == 2",
        )
        # kopf is done with the change once its diff-base says size 2: a duplicate call
        # (the bug this guards against) would come from that record missing or stale.
        await eventually(
            lambda: (
                '"size":2'
                in (cluster.get("example.dev/v1/widgets", "default", "w") or {})
                .get("metadata", {})
                .get("annotations", {})
                .get("kopf.zalando.org/last-handled-configuration", "")
            ),
            what="kopf's record of the handled change",
        )
        await call(cluster, "DELETE", WIDGETS + "/w")
        await eventually(
            lambda: cluster.get("example.dev/v1/widgets", "default", "w") is None,
            what="the widget is gone (finalizer released)",
        )
    assert calls == [1, 2, 0]


async def test_the_fake_kubelet_outlives_a_deployment_deleted_under_it(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Deployment listed, then deleted before the kubelet writes its status (the
    operator removing a server), is skipped: the kubelet used to die of the 404 and leave
    every later Deployment unready (the flaky abort/retry and blue-green tests)."""
    from tests.operator.harness import running_kubelet

    phantom = {
        "metadata": {"name": "gone", "namespace": "default", "generation": 1},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {}}, "spec": {}}},
    }
    listed = Cluster.list

    def with_phantom(self: Cluster, resource: str, namespace: str | None = None) -> list[Any]:
        found = listed(self, resource, namespace)
        return [phantom, *found] if resource == "apps/v1/deployments" else found

    monkeypatch.setattr(Cluster, "list", with_phantom)
    deployment = {
        "metadata": {"name": "later", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "later"}},
            "template": {"metadata": {"labels": {"app": "later"}}, "spec": {"containers": []}},
        },
    }
    async with running_kubelet(cluster):
        await call(cluster, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment)
        await eventually(
            lambda: (
                (cluster.get("apps/v1/deployments", "default", "later") or {})
                .get("status", {})
                .get("readyReplicas")
                == 1
            ),
            what="the later Deployment ready",
        )
