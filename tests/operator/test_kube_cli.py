"""`pilotage promote|abort NAME --kube` against the emulated API server, reached through a
kubeconfig with a bearer token (the emulator answers 401 without it, as a cluster does:
kubernetes 36.0.0's `new_client_from_config` sent none)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import kmock
import pytest

from tests.operator.conftest import api_url
from tests.operator.emulator import Cluster
from tests.operator.harness import apply_crds, cluster_call, get, write_kubeconfig
from tests.operator.manifests import BASE, model_deployment
from tests.support.procs import pilotage

pytestmark = pytest.mark.xdist_group("operator-kube-cli")


async def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        pilotage(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_promote_and_abort_with_kube_land_as_annotations(tmp_path: Path) -> None:
    token = "cli-token-0123456789"
    async with Cluster(token=token) as cluster, kmock.Server(cluster, host="127.0.0.1"):
        await apply_crds(cluster)
        await cluster_call(cluster, "POST", f"{BASE}/modeldeployments", model_deployment())
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_url(cluster), token)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}

        promoted = await run_cli(env, "promote", "iris", "--kube", "--full")
        assert promoted.returncode == 0, promoted.stderr
        aborted = await run_cli(env, "abort", "iris", "--kube")
        assert aborted.returncode == 0, aborted.stderr
        annotations = get(cluster, "modeldeployments", "iris")["metadata"]["annotations"]
        assert annotations["pilotage.dev/promote"].startswith("full:")
        assert annotations["pilotage.dev/promote"] in promoted.stdout
        assert annotations["pilotage.dev/abort"] in aborted.stdout
        assert cluster.unauthorized == []

        missing = await run_cli(env, "retry", "nope", "--kube")
        assert missing.returncode != 0
        assert "'nope' not found" in missing.stderr and "Traceback" not in missing.stderr

        wrong = write_kubeconfig(tmp_path / "wrong", api_url(cluster), "not-the-token")
        refused = await run_cli({**env, "KUBECONFIG": str(wrong)}, "promote", "iris", "--kube")
        assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert len(cluster.unauthorized) == 1


def test_connection_helper_does_not_import_kopf() -> None:
    code = (
        "import sys; import pilotage.local.kube, pilotage.kubeconnection; "
        "sys.exit('kopf' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
