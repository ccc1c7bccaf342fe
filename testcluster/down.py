"""Stop the test cluster started from a directory and remove what it made on the host.

    python -m testcluster.down [--dir .cluster]

The node agent goes first (it stops its pods and removes their network namespaces,
links and mounts), then the scheduler, the controller manager, the API server and etcd.
A process that ignores SIGTERM for 20 s is killed. The agent's own `cleanup` then runs
whatever happened to it, and the bridge goes last. The built binaries and the logs stay.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from testcluster.build import REPO
from testcluster.state import STATE_FILE, ClusterState, alive, command_line, read_state

STOP_ORDER = ("nodeagent", "scheduler", "controller-manager", "apiserver", "etcd")
# what each process's command line contains, so a recycled pid is never signalled
SIGNATURES = {
    "nodeagent": "testcluster.nodeagent",
    "scheduler": "kube-scheduler",
    "controller-manager": "kube-controller-manager",
    "apiserver": "kube-apiserver",
    "etcd": "etcd",
}
GRACE_S = 20.0


def _ours(name: str, pid: int) -> bool:
    return any(SIGNATURES.get(name, name) in part for part in command_line(pid))


def _stop(name: str, pid: int) -> None:
    if not alive(pid) or not _ours(name, pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        print(f"{name} (pid {pid}) ignored SIGTERM for {GRACE_S:.0f} s; killing it", flush=True)
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)


def _cleanup_node(state: ClusterState) -> None:
    if not (REPO / "testcluster" / "nodeagent").is_dir():
        return
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "testcluster.nodeagent",
            "cleanup",
            f"--bridge={state.bridge}",
            f"--state-dir={state.directory / 'node'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(f"node cleanup failed: {result.stderr.strip()}", file=sys.stderr, flush=True)


def down(directory: Path) -> bool:
    """Stop the cluster of `directory`; False when there was none."""
    directory = directory.resolve()
    state = read_state(directory)
    if state is None:
        return False
    for name in STOP_ORDER:
        if name in state.pids:
            _stop(name, state.pids[name])
    for name, pid in state.pids.items():  # anything not in STOP_ORDER
        if name not in STOP_ORDER:
            _stop(name, pid)
    _cleanup_node(state)
    subprocess.run(["ip", "link", "del", state.bridge], capture_output=True)
    for leftover in ("etcd", "node", "pki"):
        shutil.rmtree(directory / leftover, ignore_errors=True)
    for config in directory.glob("*.kubeconfig"):
        config.unlink()
    (directory / "kubeconfig").unlink(missing_ok=True)
    (directory / STATE_FILE).unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testcluster.down", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dir", type=Path, default=REPO / ".cluster")
    args = parser.parse_args(argv)
    print("cluster stopped" if down(args.dir) else f"no cluster running from {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
