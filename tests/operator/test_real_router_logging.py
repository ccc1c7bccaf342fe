"""Inference logging through the operator with the real data plane: spec.logging with a
pvc:// sink reaches the router Deployment (the claim mounted, the table's `logging`
section pushed), the real router writes every request to the claim, and status.logging
counts them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pilotage.inferencelog.reader import LogReader
from pilotage.operator import names
from pilotage.operator.settings import OperatorSettings
from tests.operator.conftest import eventually
from tests.operator.emulator import Cluster
from tests.operator.harness import (
    apply_crds,
    cluster_call,
    operator,
    ready_dataset,
    status,
    trained,
)
from tests.operator.kubelet import LocalAddresses, ProcessKubelet
from tests.operator.manifests import BASE, NS, model_deployment, summary
from tests.support.models import build_model

pytestmark = pytest.mark.xdist_group("operator-real-router")


async def test_the_router_pod_logs_every_request_to_the_claim(
    cluster: Cluster, tmp_path: Path
) -> None:
    pvc = tmp_path / "pvc"
    uri = summary("iris-v1")["modelUri"].removeprefix("pvc://")
    build_model(pvc / uri, version="iris-v1")
    await apply_crds(cluster)
    settings = OperatorSettings(
        standalone=True,
        liveness_port=None,
        artifact_uri="pvc://artifacts/pilotage",
        resync_seconds=1,
        min_interval_seconds=0.05,
        http_timeout_seconds=15,
    )
    kubelet = ProcessKubelet(cluster, tmp_path / "pods", pvc)
    router_port = kubelet.port(NS, names.router_name("iris"), settings.router_port)
    predict = f"http://127.0.0.1:{router_port}/v1/models/iris:predict"
    md = model_deployment()
    md["spec"]["logging"] = {
        "sampleRate": 1.0,
        "sink": {"uri": "pvc://inference-logs/iris"},
        "redact": ["petal_width_cm"],
    }
    async with kubelet.running(), operator(cluster, settings, LocalAddresses(settings, kubelet)):
        await ready_dataset(cluster)
        await trained(cluster, "iris-v1")
        await cluster_call(cluster, "POST", f"{BASE}/modeldeployments", md)

        def md_status() -> dict[str, Any]:
            return status(cluster, "modeldeployments", "iris")

        await eventually(lambda: md_status().get("phase") == "Healthy", what="Healthy on v1")
        ids: list[str] = []
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
                async with session.post(predict, json=body) as r:
                    assert r.status == 200, await r.text()
                    ids.append(r.headers["x-pilotage-request-id"])
        await eventually(
            lambda: (md_status().get("logging") or {}).get("written") == 20,
            what="status.logging.written == 20",
        )
        assert md_status()["logging"]["dropped"] == 0
    # `written` counts records after their write: the files hold them
    end = datetime.now(UTC) + timedelta(minutes=5)
    logs = (pvc / "inference-logs" / "iris").as_uri()
    records = list(LogReader(logs, "default", "iris", end - timedelta(hours=2), end))
    assert sorted(r["id"] for r in records) == sorted(ids)
    assert records[0]["features"] == [
        {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4}
    ]
