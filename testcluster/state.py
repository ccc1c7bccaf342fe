"""What a running test cluster left behind for `down` (and for a second `up`) to find."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE = "state.json"


@dataclass
class ClusterState:
    directory: Path
    n: int
    bridge: str
    node_name: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"


def write_state(state: ClusterState) -> None:
    document = {
        "n": state.n,
        "bridge": state.bridge,
        "node_name": state.node_name,
        "ports": state.ports,
        "pids": state.pids,
    }
    path = state.directory / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)


def read_state(directory: Path) -> ClusterState | None:
    try:
        document = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return ClusterState(
        directory=directory.resolve(),
        n=int(document["n"]),
        bridge=str(document["bridge"]),
        node_name=str(document["node_name"]),
        ports={str(k): int(v) for k, v in document.get("ports", {}).items()},
        pids={str(k): int(v) for k, v in document.get("pids", {}).items()},
    )


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return [part.decode(errors="replace") for part in cmdline.read().split(b"\0") if part]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


__all__ = ["ClusterState", "alive", "command_line", "free_port", "read_state", "write_state"]
