"""The operator names a `spec.model.uri` deployment's version as the embedded runtime does:
the model card's version when the card can be read, else the URI's last segment."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pilotage.operator.reconcile import Reconciler
from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call
from tests.operator.manifests import BASE, NS, model_deployment
from tests.operator.test_invalid_spec import reconciler_for
from tests.support.models import build_model


async def test_a_uri_is_served_under_its_model_cards_version(
    cluster: Cluster, tmp_path: Path
) -> None:
    model_dir = build_model(tmp_path / "models" / "2024-06", version="iris-card-7")
    body = model_deployment()
    body["spec"]["model"] = {"uri": model_dir.as_uri()}
    await apply_crds(cluster)
    await cluster_call(cluster, "POST", f"{BASE}/modeldeployments", body)
    reconciler: Reconciler = reconciler_for(cluster)
    await asyncio.to_thread(reconciler.reconcile, "modeldeployments", NS, "iris")
    stored = cluster.get("pilotage.dev/v1alpha1/modeldeployments", NS, "iris")
    assert stored is not None
    assert stored["status"]["stable"] == {"version": "iris-card-7", "uri": model_dir.as_uri()}
