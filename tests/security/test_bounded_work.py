"""Issue 16, bounded work per request: hostile clients (a separate process) attack a real
router or model server while this test measures a small request's latency; its p99
under attack must stay within 3x of its p99 unloaded.

The unloaded p99 is measured at the same time, on a twin: an identical server (or
router) started beside the attacked one, that no one attacks. Each sample sends one
small request to each, in turn, so both see the same background load, the other tests
running beside and the attacker's own CPU included (on a real deployment the attacker
is another machine; here it shares the same two cores). A baseline measured before the
attack, under whatever else ran then, made the ratio 7-12x in a full parallel
``make test`` while the server was not stalled (the twin saw the same slowdown); a
server that stalls on a hostile body slows the attacked one only, which this catches.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.router.conftest import table
from tests.router.traffic import Answer, Client
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


def p99(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[int(0.99 * len(ordered)) - 1]


def side_by_side(urls: list[str]) -> list[dict[str, float]]:
    """Per url, the p99 of a small prediction and of a ``GET /metrics``, sampled in
    turn: each round sends one of each to every url, the first url alternating."""
    clients = [Client(url) for url in urls]
    seconds: list[dict[str, list[float]]] = [{"predict": [], "metrics": []} for _ in urls]
    calls: dict[str, Callable[[Client], Answer]] = {
        "predict": lambda client: client.predict(ROW),
        "metrics": lambda client: client.request("GET", "/metrics"),
    }
    try:
        for i in range(SAMPLES):
            order = range(len(urls)) if i % 2 == 0 else reversed(range(len(urls)))
            for j in order:
                for what, call in calls.items():
                    answer = call(clients[j])
                    assert answer.status == 200, answer.body
                    seconds[j][what].append(answer.seconds)
    finally:
        for client in clients:
            client.close()
    return [{what: p99(values) for what, values in per.items()} for per in seconds]


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


def within_3x(url: str, twin: str, mode: str, n: int) -> dict[str, Any]:
    """The attack's summary once a small request's p99 (and a ``GET /metrics``'s, the
    probe's stand-in) on ``url`` under attack stayed within 3x of its p99 on ``twin``,
    measured side by side (up to 5 tries: a p99 of 250 samples on two shared cores
    still varies; a loop held by the attack is 10-100x, not a little over 3x)."""
    tries = []
    for _ in range(5):
        summary: dict[str, Any] = {}
        with attacking(url, mode, n, summary):
            attacked, unloaded = side_by_side([url, twin])
        ratios = {what: attacked[what] / unloaded[what] for what in attacked}
        tries.append(ratios)
        print(
            f"{mode}: p99 {attacked['predict'] * 1000:.1f} ms under attack, "
            f"{unloaded['predict'] * 1000:.1f} ms on the twin ({ratios['predict']:.2f}x); "
            f"metrics {attacked['metrics'] * 1000:.1f} / {unloaded['metrics'] * 1000:.1f} ms "
            f"({ratios['metrics']:.2f}x)"
        )
        if max(ratios.values()) <= 3:
            return summary
    raise AssertionError(f"p99 under attack / p99 on the unloaded twin, 5 tries: {tries}")


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_iris(tmp_path_factory.mktemp("iris") / "iris")


def test_hostile_bodies_do_not_stall_the_server(iris: Any, tmp_path: Path) -> None:
    with serve(iris, tmp_path) as server, serve(iris, tmp_path) as twin:
        for mode in ("bytes", "rows"):
            summary = within_3x(server.url, twin.url, mode, 2)
            expected = "400" if mode == "bytes" else "413"
            assert summary["codes"].get(expected, 0) >= 2, summary
            assert set(summary["codes"]) <= {expected, "BrokenPipeError", "ConnectionResetError"}


def test_slowloris_is_cut_off_and_does_not_slow_others(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    doc = table(stable=(stable, 100))
    router, twin = (start_router(doc, "--header-timeout", "1") for _ in range(2))
    summary = within_3x(router.url, twin.url, "slowloris", 200)
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


def test_a_server_cuts_off_slow_headers_and_slow_bodies(iris: Any, tmp_path: Path) -> None:
    # the model server, like the router (above): issue 16 item 5 names both
    flags = ("--header-timeout", "1", "--body-timeout", "1")
    with serve(iris, tmp_path, *flags) as server, serve(iris, tmp_path, *flags) as twin:
        summary = within_3x(server.url, twin.url, "slowloris", 200)
        assert summary["closed"] == 200, summary
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000"
                b'\r\n\r\n{"instances": '
            )
            started = time.monotonic()
            assert sock.recv(100) == b""  # closed by the server, not answered
            assert time.monotonic() - started < 10
        assert Client(server.url).predict(ROW).status == 200


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


def _predict_on(sock: socket.socket) -> tuple[int, bytes]:
    """A small prediction on an already open connection (kept open): status and body."""
    body = json.dumps({"instances": ROW}).encode()
    sock.sendall(
        b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, resp.read()


def test_a_server_refuses_connections_past_its_cap(iris: Any, tmp_path: Path) -> None:
    # the model server, like the router (above): docs/security.md, `--max-connections`
    with serve(iris, tmp_path, "--max-connections", "20") as server:
        port = int(server.url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        try:
            # the 21st is answered 503 and closed at once, before it sends a byte
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                answer = b""
                while chunk := extra.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"connection: close" in answer.lower()
            assert answer.endswith(
                b'{"error": "too many connections: this server holds at most 20 at once"}'
            ), answer
            # a connection inside the cap is served meanwhile, and stays open
            for sock in (held[0], held[-1]):
                status, body = _predict_on(sock)
                assert status == 200, body
                assert len(json.loads(body)["predictions"]) == 1
            for sock in held[:5]:
                sock.close()
            # room again: a new client is served
            wait_until(
                lambda: Client(server.url, timeout=5).predict(ROW).status == 200,
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
    flags = ("--max-inflight-body-bytes", str(40 << 20), "--body-timeout", "30")
    router, twin = (start_router(table(stable=(stable, 100)), *flags) for _ in range(2))
    before = rss_mib(router.proc.pid)
    summary = within_3x(router.url, twin.url, "partial", 40)
    grown = rss_mib(router.proc.pid) - before
    # 40 uploads declared 15 MB each: two fit the 40 MiB budget, the others are refused at
    # once: answered 503, or closed or reset before the client could read the 503 (a
    # client still sending its body may see the reset first); never another answer
    assert summary["refused"] >= 38 and set(summary["codes"]) <= {"503"}, summary
    assert grown < 80, f"router grew by {grown:.0f} MiB"


def test_partial_uploads_to_a_server_hit_its_budget(iris: Any, tmp_path: Path) -> None:
    budget = ("--max-inflight-body-bytes", str(40 << 20))
    with serve(iris, tmp_path, *budget) as server, serve(iris, tmp_path, *budget) as twin:
        before = rss_mib(server.process.pid)
        summary = within_3x(server.url, twin.url, "partial:7000000", 40)
        grown = rss_mib(server.process.pid) - before
    # 40 uploads declared 7 MB each: five fit the 40 MiB budget, the others are refused at
    # once (503, or closed or reset first: see the router's test above)
    assert summary["refused"] >= 35 and set(summary["codes"]) <= {"503"}, summary
    assert grown < 80, f"server grew by {grown:.0f} MiB"
