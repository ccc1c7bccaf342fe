"""A replica whose network vanishes while it holds a request (a lost node: no reset, no
close, nothing answers any more). The router learns it from TCP within
--dead-peer-timeout instead of waiting for the route timeout, takes the replica out
and sends the request, an inference that is safe to repeat, to another replica.

The replica runs in a network namespace of its own, joined to this one by a veth pair;
the namespace's end of the pair is set down mid-request, so that every packet to it is
dropped without an answer, as when a node dies."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.router.conftest import Router, Upstream
from tests.router.test_replicas_e2e import ROW, doc, in_thread, served, stats
from tests.router.traffic import Client
from tests.support.procs import free_port, running, wait_until

LOCK = "/run/pilotage-test-dead-peer.lock"
ROUTE_TIMEOUT = 60  # far above what the test waits: only the dead-peer detection can end it

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2's `ip` (a network namespace for the replica)",
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Namespace:
    name: str
    inside: str  # the namespace's end of the veth pair
    address: str


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    tag = secrets.token_hex(3)
    name, outside, inside = f"pilotage-dp-{tag}", f"pdo{tag}", f"pdi{tag}"
    ip("netns", "add", name)
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", name)
        # a /30 no other run of this test holds: two links on one subnet would mix routes
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            taken = subprocess.run(
                ["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True
            ).stdout
            subnet = next(n for n in range(1, 255) if f" 10.253.{n}.1/30 " not in taken)
            host, peer = f"10.253.{subnet}.1", f"10.253.{subnet}.2"
            ip("addr", "add", f"{host}/30", "dev", outside)
        ip("link", "set", outside, "up")
        ip("-n", name, "addr", "add", f"{peer}/30", "dev", inside)
        ip("-n", name, "link", "set", inside, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield Namespace(name, inside, peer)
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_a_request_on_a_replica_whose_network_vanished_goes_to_another_replica(
    namespace: Namespace,
    tmp_path: Path,
    start_upstream: Callable[..., Upstream],
    start_router: Callable[..., Router],
) -> None:
    port = free_port()
    url = f"http://{namespace.address}:{port}"
    command = [
        "ip", "netns", "exec", namespace.name, sys.executable, "-m", "tests.router.standin",
        "--host", namespace.address, "--port", str(port), "--version", "1",
    ]  # fmt: skip
    with running(command, tmp_path / "vanishing.log", ready_url=f"{url}/v2/health/ready") as proc:
        vanishing = Upstream(url, "1", proc)
        staying = start_upstream("1")
        router = start_router(
            {**doc(stable=([vanishing, staying], 100, "1")), "timeoutSeconds": ROUTE_TIMEOUT},
            "--dead-peer-timeout",
            "2",
        )
        vanishing.control(delay=ROUTE_TIMEOUT)  # it holds what it gets: in flight for good
        # the first request goes to the first replica, the next (fewest in flight) to the other
        client = Client(router.url, timeout=ROUTE_TIMEOUT + 10)
        thread, answers = in_thread(
            lambda: Client(router.url, timeout=ROUTE_TIMEOUT + 10).predict(ROW)
        )
        wait_until(lambda: served(vanishing) == 1, 10, what="a request held by the replica")
        assert client.predict(ROW).status == 200  # the other replica answers meanwhile

        ip("-n", namespace.name, "link", "set", namespace.inside, "down")
        thread.join(ROUTE_TIMEOUT - 10)
        assert not thread.is_alive(), "the request waited for the route timeout"
        [answer] = answers
        assert not isinstance(answer, Exception), answer
        assert answer.status == 200, answer.body
        assert served(staying) == 2  # the answer above, and the request given up on
        variant = stats(router)["variants"]["stable"]
        assert variant["replicasOut"] == 1 and variant["codes"] == {"200": 2}, variant
        client.close()
