"""Upstream connections are bounded per upstream: a burst of clients waits for a connection
instead of opening one each (through a real router process, and the pool on its own)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import uvloop

from pilotage.router.upstream import UpstreamError, UpstreamPool, UpstreamTimeout, _Connection
from tests.router.conftest import table
from tests.router.traffic import Answer, Client
from tests.support.procs import free_port

pytestmark = pytest.mark.xdist_group("router-e2e")

BURST = 40


def burst(url: str, clients: int) -> list[Answer]:
    """``clients`` threads, each on its own connection, all sending one request at once."""
    answers: list[Answer] = []
    errors: list[BaseException] = []
    start = threading.Barrier(clients)
    lock = threading.Lock()

    def one(i: int) -> None:
        client = Client(url)
        try:
            start.wait(30)
            answer = client.predict([[float(i), 1.0, 2.0, 3.0]])
            with lock:
                answers.append(answer)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return answers


def test_a_burst_shares_a_bounded_number_of_upstream_connections(
    start_upstream, start_router
) -> None:
    upstream = start_upstream("1")
    upstream.control(delay=0.1)  # requests overlap, so an unbounded pool would open many
    doc = table(stable=(upstream, 100))
    bounded = start_router(doc, "--max-connections-per-upstream", "4")

    answers = burst(bounded.url, BURST)
    assert sorted(a.status for a in answers) == [200] * BURST
    opened = upstream.control()["connections"]
    assert 1 <= opened <= 4

    # the same burst through a router with the default limit opens more than 4: the
    # bound above is the router's doing, not the test's concurrency
    default = start_router(doc)
    answers = burst(default.url, BURST)
    assert sorted(a.status for a in answers) == [200] * BURST
    assert upstream.control()["connections"] - opened > 4


# ---- the pool on its own, against an in-process HTTP server on a real socket ----------


@dataclass
class TinyUpstream:
    """Answers every request with 200 at once, except ``/hang``, which never answers."""

    port: int = 0
    accepted: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /hang "):
                await asyncio.Event().wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()


@asynccontextmanager
async def tiny_upstream() -> AsyncIterator[TinyUpstream]:
    upstream = TinyUpstream()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await upstream.handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        for writer in upstream.writers:
            writer.close()
        server.close()


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}") from None


async def get(pool: UpstreamPool, path: bytes, timeout: float = 10.0) -> int:
    return (await pool.request(b"GET", path, b"", b"", timeout)).status


async def test_waiters_reuse_released_connections_first_come_first_served() -> None:
    async with tiny_upstream() as upstream:
        pool = UpstreamPool("127.0.0.1", upstream.port, max_connections=2)
        statuses = await asyncio.gather(*(get(pool, b"/x") for _ in range(50)))
        assert statuses == [200] * 50
        assert upstream.accepted == 2
        assert pool.open_connections == 2 and pool.waiting == 0


async def test_a_waiter_times_out_and_a_cancelled_request_frees_its_slot() -> None:
    async with tiny_upstream() as upstream:
        pool = UpstreamPool("127.0.0.1", upstream.port, max_connections=1)
        hanging = asyncio.create_task(get(pool, b"/hang", timeout=60))
        await eventually(lambda: upstream.accepted == 1, what="the hanging request connected")
        with pytest.raises(UpstreamTimeout, match=r"no free connection .* \(all 1 busy\)"):
            await get(pool, b"/x", timeout=0.2)
        assert pool.waiting == 0
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        assert pool.open_connections == 0  # the cancelled request's connection was closed
        assert await get(pool, b"/x") == 200
        assert upstream.accepted == 2


async def test_failed_connects_give_their_slots_back() -> None:
    pool = UpstreamPool("127.0.0.1", free_port(), max_connections=1)
    for _ in range(3):
        with pytest.raises(Exception, match="cannot connect"):
            await get(pool, b"/x", timeout=2)
    assert pool.open_connections == 0 and pool.waiting == 0


# ---- a connection that closes between the pool handing it out and the request's write --


class ResumedLate(UpstreamPool):
    """A pool whose request resumes after connecting only once the upstream's close has
    reached the new connection: what a busy router loop sees when the upstream is killed
    with connections in its accept backlog (the kernel resets them)."""

    async def _connect(self, timeout: float) -> _Connection:
        conn = await super()._connect(timeout)
        await eventually(lambda: conn.closed, "the upstream's close reached the connection")
        return conn


async def closed_fresh_connection() -> tuple[str, int]:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()  # accepted, then reset before reading anything

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    try:
        pool = ResumedLate("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            await get(pool, b"/x", timeout=5)
        except UpstreamError as exc:  # what the router retries on stable
            return f"{type(exc).__name__}: {exc}", pool.open_connections
        raise AssertionError("answered by an upstream that closed every connection")
    finally:
        server.close()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_connection_closed_before_the_write_fails_as_an_upstream_error(loop: str) -> None:
    # The router runs on uvloop, whose write on a closed transport raises RuntimeError:
    # it escaped the router's retry on stable as a 500 (a killed canary). asyncio drops
    # the write instead: the request waited for its whole timeout (504).
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        error, still_open = runner.run(closed_fresh_connection())
    # UpstreamUnreachable is the UpstreamError for "nothing was sent" (another replica of
    # the variant is tried at once)
    assert (error, still_open) == (
        "UpstreamUnreachable: connection closed before the request was sent",
        0,
    )
