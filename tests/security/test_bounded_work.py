"""Issue 16, bounded work per request: hostile clients (a separate process) attack a real
router or model server while this test measures a small request's latency; its p99
under attack must stay within 3x of its p99 without, measured in the same test."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.router.conftest import table
from tests.router.traffic import Client
from tests.server.artifacts import build_iris
from tests.server.conftest import serve
from tests.support.procs import wait_until

pytestmark = pytest.mark.xdist_group("router-e2e")

SAMPLES = 250
ROW = [[5.1, 3.5, 1.4, 0.2]]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def p99(url: str, path: str = "/v1/models/iris:predict") -> float:
    client = Client(url)
    seconds = []
    for _ in range(SAMPLES):
        predict = path.endswith(":predict")
        answer = client.predict(ROW) if predict else client.request("GET", path)
        assert answer.status == 200, answer.body
        seconds.append(answer.seconds)
    client.close()
    seconds.sort()
    return seconds[int(0.99 * len(seconds)) - 1]


@contextmanager
def attacking(url: str, mode: str, n: int, summary: dict[str, Any]) -> Iterator[None]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.security.attacker", host, port, mode, str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        summary.update(json.loads(out.strip().splitlines()[-1]))


def within_3x(url: str, mode: str, n: int, warm: Any = None) -> dict[str, Any]:
    """The attack's summary once a small request's p99 under attack stayed within 3x of
    its p99 without (up to 5 tries: other processes share this machine's two cores; a
    loop held by the attack is 10-100x, not a little over 3x)."""
    ratios = []
    for _ in range(5):
        base = p99(url)
        summary: dict[str, Any] = {}
        with attacking(url, mode, n, summary):
            if warm is not None:
                warm()
            loaded = p99(url)
            health = p99(url, "/metrics")
        ratios.append((loaded / base, base, loaded, health))
        print(f"{mode}: p99 {base * 1000:.1f} ms without, {loaded * 1000:.1f} ms under attack")
        if loaded <= 3 * base:
            return summary
    raise AssertionError(f"p99 under attack / p99 without, 5 tries: {ratios}")


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_iris(tmp_path_factory.mktemp("iris") / "iris")


@pytest.mark.xfail(
    strict=False,
    reason="open defect (issue 16.4): in a full parallel make test the small request p99 under a hostile body was 6.8-12x its unloaded p99, over the 3x goal",
)
def test_hostile_bodies_do_not_stall_the_server(iris: Any, tmp_path: Path) -> None:
    with serve(iris, tmp_path) as server:
        for mode in ("bytes", "rows"):
            summary = within_3x(server.url, mode, 2)
            expected = "400" if mode == "bytes" else "413"
            assert summary["codes"].get(expected, 0) >= 2, summary
            assert set(summary["codes"]) <= {expected, "BrokenPipeError", "ConnectionResetError"}


def test_slowloris_is_cut_off_and_does_not_slow_others(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)), "--header-timeout", "1")
    summary = within_3x(router.url, "slowloris", 200)
    # every held connection was closed by the router (they drip a byte every 0.2 s)
    assert summary["closed"] == 200, summary


def test_a_body_sent_too_slowly_is_dropped(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)), "--body-timeout", "1")
    port = int(router.url.rsplit(":", 1)[1])
    head = (
        b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"
        b'{"instances": '
    )
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head)
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the router, not answered
        assert time.monotonic() - started < 10
    wait_until(lambda: router.stats()["incompleteBodies"] == 1, 10, what="drop counted")
    assert router.stats()["variants"]["stable"]["requests"] == 0


def test_connections_past_the_cap_are_refused_at_once(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)), "--max-connections", "20")
    port = int(router.url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            answer = extra.recv(4096)
            assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        for sock in held[:5]:
            sock.close()
        # room again: a new client is served
        wait_until(
            lambda: Client(router.url, timeout=5).predict(ROW).status == 200,
            10,
            what="served once connections were released",
        )
    finally:
        for sock in held:
            sock.close()


def test_declared_length_over_the_limit_is_refused_before_the_body(
    start_upstream, start_router
) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)))
    port = int(router.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 20000000\r\n\r\n"
        )
        answer = b""
        while not answer.endswith(b"}"):  # answered without a byte of the body
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"--max-body-bytes" in answer


def test_partial_uploads_hit_the_memory_budget_not_the_heap(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    router = start_router(
        table(stable=(stable, 100)),
        "--max-inflight-body-bytes",
        str(40 << 20),
        "--body-timeout",
        "30",
    )
    before = rss_mib(router.proc.pid)
    summary = within_3x(router.url, "partial", 40)
    grown = rss_mib(router.proc.pid) - before
    # 40 uploads declared 15 MB each: two fit the 40 MiB budget, the others are 503 at once
    assert summary["codes"].get("503", 0) >= 38, summary
    assert grown < 80, f"router grew by {grown:.0f} MiB"


def test_partial_uploads_to_a_server_hit_its_budget(iris: Any, tmp_path: Path) -> None:
    with serve(iris, tmp_path, "--max-inflight-body-bytes", str(40 << 20)) as server:
        before = rss_mib(server.process.pid)
        summary = within_3x(server.url, "partial:7000000", 40)
        grown = rss_mib(server.process.pid) - before
    # 40 uploads declared 7 MB each: five fit the 40 MiB budget, the others are 503 at once
    assert summary["codes"].get("503", 0) >= 35, summary
    assert grown < 80, f"server grew by {grown:.0f} MiB"
