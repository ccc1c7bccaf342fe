"""`make cluster-up` / `cluster-down` as a user runs them: a second cluster beside the
session's, started twice (idempotent), used by a pod, stopped, and nothing left behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testcluster import build, versions
from testcluster.state import alive, read_state
from tests.cluster.conftest import Cluster

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, f"--dir={directory}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )


def _host_names(n: int) -> list[str]:
    """Network namespaces, links and mounts on the host that belong to cluster `n`."""
    ours = re.compile(rf"\bpil{n}\D")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found = [line for line in (netns + links).splitlines() if ours.search(line)]
    return found


def _mounts_under(directory: Path) -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line for line in mountinfo if str(directory) in line]


def _kubectl(directory: Path, *args: str, stdin: str | None = None) -> str:
    kubectl = build.kubernetes_dir(build.DEFAULT_BIN_ROOT) / "kubectl"
    result = subprocess.run(
        [str(kubectl), f"--kubeconfig={directory / 'kubeconfig'}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_up_twice_then_down_leaves_no_process_namespace_link_or_mount(
    cluster: Cluster, tmp_path: Path
) -> None:
    directory = tmp_path / "second"
    first = _run("testcluster.up", directory)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == f"KUBECONFIG={directory / 'kubeconfig'}"
    state = read_state(directory)
    assert state is not None and state.n != cluster.state.n  # two clusters, two numbers
    try:
        nodes = json.loads(_kubectl(directory, "get", "nodes", "-o", "json"))["items"]
        ready = {
            c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]
        }  # one node, Ready
        assert len(nodes) == 1 and ready["Ready"] == "True", nodes
        version = json.loads(_kubectl(directory, "version", "-o", "json"))
        assert version["clientVersion"]["gitVersion"] == f"v{versions.KUBERNETES}"
        assert version["serverVersion"]["gitVersion"] == f"v{versions.KUBERNETES}"

        second = _run("testcluster.up", directory)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        assert read_state(directory) == state  # the same processes, not a second set

        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "ghcr.io/pilotage-dev/pilotage-server:0.1.0",
                        "command": ["python", "-c", "import time; time.sleep(3600)"],
                    }
                ]
            },
        }
        _kubectl(directory, "apply", "-f", "-", stdin=json.dumps(pod))
        _kubectl(directory, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s")
        assert _host_names(state.n), "a running pod has a network namespace and links"
    finally:
        stopped = _run("testcluster.down", directory)
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in state.pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, pid in state.pids.items() if alive(pid)]
    assert _host_names(state.n) == []
    assert _mounts_under(directory) == []
    netns_files = Path("/etc/netns")
    leftovers = netns_files.glob(f"pil{state.n}-*") if netns_files.is_dir() else iter(())
    assert list(leftovers) == []
    assert read_state(directory) is None
    # the session's cluster is untouched by the second one going
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
