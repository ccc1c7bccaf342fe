"""Pod networking with `ip`: a network namespace and a veth pair per pod on the cluster's bridge.

Every name made here starts with the cluster's prefix (the bridge name without its `br`
suffix, then `-`): namespaces `<prefix>-p<x>`, host-side links `<prefix>-h<x>` (x: the last
octet of the pod's address), /etc/netns/<prefix>-p<x>/. `cleanup` removes them all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("nodeagent.network")
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")


def prefix_of(bridge: str) -> str:
    return (bridge[:-2] if bridge.endswith("br") else bridge) + "-"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def ip_batch(lines: list[str], netns: str | None = None) -> None:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    result = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


@dataclass
class PodNetwork:
    netns: str
    host_link: str
    address: str

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)

    @property
    def etc_dir(self) -> Path:
        return ETC_NETNS / self.netns


class Network:
    def __init__(self, bridge: str, pod_cidr: str):
        self.bridge = bridge
        self.prefix = prefix_of(bridge)
        self.cidr = ipaddress.ip_network(pod_cidr)
        hosts = list(self.cidr.hosts())
        self.gateway = str(hosts[0])
        self.pool = [str(h) for h in hosts[1:]]
        self.used: dict[str, PodNetwork] = {}
        self.next = 0

    def configure_bridge(self) -> None:
        ip("addr", "replace", f"{self.gateway}/{self.cidr.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_address(self, address: str) -> None:
        ip("addr", "replace", f"{address}/32", "dev", self.bridge)

    def remove_address(self, address: str) -> None:
        ip("addr", "del", f"{address}/32", "dev", self.bridge, check=False)

    def allocate(self) -> PodNetwork:
        """The next free address after the last one given (round robin, as host-local IPAM
        does), so a deleted pod's address is not reused while endpoints may still name it."""
        count = len(self.pool)
        for step in range(count):
            address = self.pool[(self.next + step) % count]
            if address not in self.used:
                self.next = (self.next + step + 1) % count
                x = address.rsplit(".", 1)[1]
                net = PodNetwork(f"{self.prefix}p{x}", f"{self.prefix}h{x}", address)
                self.used[address] = net
                return net
        raise RuntimeError(f"no free address in {self.cidr}")

    def setup(self, net: PodNetwork) -> None:
        """Create the namespace, the veth pair and the pod's eth0 with its address and route."""
        self._remove(net)
        peer = net.host_link.replace("-h", "-c", 1)
        ip("netns", "add", net.netns)
        ip_batch(
            [
                f"link add {net.host_link} type veth peer name {peer} netns {net.netns}",
                f"link set {net.host_link} master {self.bridge}",
                f"link set {net.host_link} up",
            ]
        )
        ip_batch(
            [
                f"link set {peer} name eth0",
                f"addr add {net.address}/{self.cidr.prefixlen} dev eth0",
                "link set eth0 up",
                "link set lo up",
                f"route add default via {self.gateway}",
            ],
            netns=net.netns,
        )
        net.etc_dir.mkdir(parents=True, exist_ok=True)
        log.info("set up %s (%s, %s)", net.netns, net.host_link, net.address)

    def teardown(self, net: PodNetwork) -> None:
        # A pod's network is released when it finishes and again when it is deleted; by
        # the second time its address (and so its names) may be another pod's.
        if self.used.get(net.address) is not net:
            return
        kill_netns_processes(net.netns)
        self._remove(net)
        del self.used[net.address]

    def _remove(self, net: PodNetwork) -> None:
        log.info("removing %s (%s, %s)", net.netns, net.host_link, net.address)
        ip("link", "del", net.host_link, check=False)
        if (NETNS_DIR / net.netns).exists():
            ip("netns", "del", net.netns, check=False)
        shutil.rmtree(net.etc_dir, ignore_errors=True)


def netns_pids(netns: str) -> list[int]:
    result = ip("netns", "pids", netns, check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def kill_netns_processes(netns: str, timeout: float = 5.0) -> None:
    """SIGKILL every process in the namespace and wait until they are gone."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in netns_pids(netns) if p != os.getpid()]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def ours(prefix: str) -> tuple[list[str], list[str]]:
    """(network namespaces, links) on this machine whose names carry `prefix`."""
    namespaces = sorted(p.name for p in NETNS_DIR.glob(f"{prefix}*")) if NETNS_DIR.is_dir() else []
    links = []
    for line in ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if name.startswith(prefix):
            links.append(name)
    return namespaces, links


def mounts_under(paths: list[str]) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in paths):
                found.append(point)
    return found


def cleanup(bridge: str, state_dir: Path) -> list[str]:
    """Remove everything the agent of this bridge created; returns what was removed."""
    prefix = prefix_of(bridge)
    removed: list[str] = []
    for pid_file in (state_dir / "procs").glob("*") if (state_dir / "procs").is_dir() else []:
        _kill_recorded(pid_file)
    namespaces, _links = ours(prefix)
    for ns in namespaces:
        kill_netns_processes(ns)
    for ns in namespaces:
        ip("netns", "del", ns, check=False)
        removed.append(f"netns {ns}")
    for link in ours(prefix)[1]:
        ip("link", "del", link, check=False)
        removed.append(f"link {link}")
    for etc in ETC_NETNS.glob(f"{prefix}*") if ETC_NETNS.is_dir() else []:
        shutil.rmtree(etc, ignore_errors=True)
        removed.append(f"dir {etc}")
    for point in reversed(
        mounts_under([str(state_dir.resolve()), *(str(NETNS_DIR / n) for n in namespaces)])
    ):
        subprocess.run(["umount", "-l", point], capture_output=True)
        removed.append(f"mount {point}")
    if ip("link", "show", bridge, check=False).returncode == 0:
        ip("addr", "flush", "dev", bridge, check=False)
        removed.append(f"addresses of {bridge}")
    return removed


def _kill_recorded(pid_file: Path) -> None:
    """Kill a recorded container process group if the pid still belongs to it."""
    try:
        pid = int(pid_file.name)
        start = pid_file.read_text().strip()
        if _start_time(pid) == start:
            os.killpg(pid, signal.SIGKILL)
    except (ValueError, OSError):
        pass
    pid_file.unlink(missing_ok=True)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def record(state_dir: Path, pid: int) -> None:
    procs = state_dir / "procs"
    procs.mkdir(parents=True, exist_ok=True)
    start = _start_time(pid)
    if start:
        (procs / str(pid)).write_text(start)


def forget(state_dir: Path, pid: int) -> None:
    (state_dir / "procs" / str(pid)).unlink(missing_ok=True)
