"""Two ModelDeployments of the same name in two namespaces are two deployments on the
embedded runtime: each gets its own servers, router and routing file, and deleting one
leaves the other serving."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from pilotage.api import API_VERSION, parse_resource
from pilotage.local.platform import LocalPlatform, scoped, unscoped
from pilotage.local.runtime import Runtime
from pilotage.local.up import build_runtime
from tests.support.models import build_model
from tests.support.procs import wait_until

API = API_VERSION


def _deployment(namespace: str, model_uri: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": namespace},
        "spec": {"model": {"uri": model_uri}},
    }


def _predict(endpoint: str) -> Any:
    body = json.dumps({"instances": [[5.9, 3.0, 4.2, 1.5]]}).encode()
    req = urllib.request.Request(
        f"{endpoint}/v1/models/iris:predict", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _serving(runtime: Runtime, platform: LocalPlatform, namespace: str) -> bool:
    runtime.tick()
    state = platform.router(namespace, "iris")
    return (
        state is not None and state.ready and bool(platform.server_records("iris", None, namespace))
    )


def test_scoped_names_keep_the_default_namespace_bare() -> None:
    assert scoped("default", "iris") == "iris"
    assert scoped("a", "iris") == "a:iris"
    assert unscoped("iris") == ("default", "iris")
    assert unscoped("a:iris") == ("a", "iris")


def test_same_name_in_two_namespaces_gets_two_deployments(tmp_path: Path) -> None:
    model = build_model(tmp_path / "model")
    store, runtime = build_runtime(tmp_path / "state")
    platform = runtime.platform
    try:
        for namespace in ("a", "b"):
            doc = _deployment(namespace, model.as_uri())
            store.apply(parse_resource(doc, "ModelDeployment/iris"))
        wait_until(
            lambda: _serving(runtime, platform, "a") and _serving(runtime, platform, "b"),
            what="a router and servers for iris in namespaces a and b",
        )
        endpoints = {ns: platform.router_endpoint("iris", ns) for ns in ("a", "b")}
        assert endpoints["a"] != endpoints["b"]
        keys = {r.key for r in platform.supervisor.records()}
        assert {"router/a:iris", "router/b:iris"} <= keys
        assert {k for k in keys if k.startswith("server/")} == {
            "server/a:iris/v1/0",
            "server/b:iris/v1/0",
        }
        for ns in ("a", "b"):
            assert (tmp_path / "state" / "routes" / f"{ns}:iris.json").exists()
            endpoint = endpoints[ns]
            assert endpoint is not None and _predict(endpoint)

        store.delete("ModelDeployment", "iris", "a")
        runtime.tick()

        keys = {r.key for r in platform.supervisor.records()}
        assert not [k for k in keys if "a:iris" in k]
        assert platform.router("a", "iris") is None
        assert not (tmp_path / "state" / "routes" / "a:iris.json").exists()
        assert "router/b:iris" in keys and "server/b:iris/v1/0" in keys
        wait_until(
            lambda: _serving(runtime, platform, "b"), what="iris in namespace b still serving"
        )
        assert platform.router_endpoint("iris", "b") == endpoints["b"]
        assert _predict(str(endpoints["b"]))
    finally:
        platform.stop_everything()
