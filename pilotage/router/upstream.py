"""A lean HTTP/1.1 client for the proxied hot path: keep-alive pools, one write per request.

Why not httpx or aiohttp: measured at 0.9-2 ms and 235-358 us of CPU per proxied
request (docs/performance.md); this client is an ``asyncio.Protocol`` fed into
httptools' C parser, with idle connections kept per upstream and a timer handle (not
a task) per request for the timeout.

Responses are buffered whole: inference answers are small, and the router needs the
body to compare shadow answers and to remember predictions for feedback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import math
import socket
from typing import Any

import httptools

DEFAULT_MAX_CONNECTIONS = 256  # per upstream: busy, idle and connecting together
# A TCP handshake is answered by the upstream's kernel, not its application, so a busy
# server still connects at once; an address nobody answers (a pod gone with its network,
# a dead node) is given up after this and treated as refused: nothing was sent, so the
# request goes to another replica.
DEFAULT_CONNECT_TIMEOUT = 2.0
# A request already written to a peer that then vanished (no reset: the host or its
# network is gone) is given up after this many seconds without a TCP acknowledgement
# (detect_dead_peer), and goes to another replica when it is safe to repeat.
DEFAULT_DEAD_PEER_TIMEOUT = 3.0
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not give an answer (connect failure, reset, timeout, bad HTTP)."""

    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamUnreachable(UpstreamError):
    """Nothing reached the upstream (connection refused, or closed before the request was
    written): trying another replica is always safe."""


class UpstreamVanished(UpstreamError):
    """The peer stopped acknowledging (its host or network is gone): a new connection to
    it would wait for the connect timeout, so the request goes to another replica."""


class UpstreamResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


_VANISHED = (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH)


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_headers",
        "_parser",
        "_size",
        "_waiter",
        "closed",
        "dead_peer_timeout",
        "got_bytes",
        "transport",
    )

    def __init__(self, dead_peer_timeout: float = 0.0) -> None:
        self.dead_peer_timeout = dead_peer_timeout
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self.closed = False
        self.got_bytes = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.dead_peer_timeout > 0:
            detect_dead_peer(transport.get_extra_info("socket"), self.dead_peer_timeout)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed HTTP answer ({exc})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if isinstance(exc, OSError) and exc.errno in _VANISHED:
                self._fail(
                    UpstreamVanished(
                        f"no TCP acknowledgement within {self.dead_peer_timeout:g}s before a "
                        f"complete answer ({exc.strerror}: the upstream's host or network "
                        "is gone)"
                    )
                )
                return
            reason = "connection reset" if exc else "connection closed"
            self._fail(UpstreamError(f"{reason} before a complete answer"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            self._fail(UpstreamError(f"answer larger than {MAX_RESPONSE_BYTES} bytes"))
            self.close()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        body = self._body
        response = UpstreamResponse(
            parser.get_status_code(),
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
        )
        if not parser.should_keep_alive():
            self.close()
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # used by the pool
    def send(self, data: bytes, waiter: asyncio.Future[UpstreamResponse]) -> None:
        """Write one request; ``waiter`` gets its answer or an UpstreamError.

        The connection may have closed between the pool handing it out and this write:
        a fresh connection the upstream reset (killed with connections in its accept
        backlog), or a released one handed to a waiting request that resumed later.
        uvloop raises RuntimeError on such a write (asyncio drops the data and the
        request would wait for its timeout): fail the waiter instead, with nothing sent.
        """
        self._waiter = waiter
        self._headers = []
        self._body = []
        self._size = 0
        self.got_bytes = False
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self._fail(UpstreamUnreachable("connection closed before the request was sent"))
            return
        try:
            transport.write(data)
        except (RuntimeError, OSError) as exc:
            self._fail(
                UpstreamUnreachable(f"connection unusable before the request was sent ({exc})")
            )
            self.close()

    def _fail(self, exc: UpstreamError) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def time_out(self, timeout: float) -> None:
        self._fail(UpstreamTimeout(f"no answer within {timeout:g}s"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def detect_dead_peer(sock: Any, timeout: float) -> None:
    """Make the kernel end the connection when the peer stops acknowledging for
    ``timeout`` seconds: a host or pod network that vanished sends no reset, and a
    request already written would otherwise wait for the route's whole timeout.
    Keepalive probes every second while an answer is awaited (a live peer's kernel
    acknowledges them however busy its application is); TCP_USER_TIMEOUT bounds both
    them and unacknowledged data. Linux only; elsewhere nothing changes."""
    if sock is None or not hasattr(socket, "TCP_USER_TIMEOUT"):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, math.ceil(timeout)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000))


class UpstreamPool:
    """Keep-alive connections to one upstream ``host:port``, at most ``max_connections``.

    A connection slot is taken before connecting and given back when the connection
    closes, so busy, idle and connecting connections together never exceed the limit.
    When every slot is taken a request waits (first come, first served) for a released
    connection, or for a freed slot, within its timeout; a burst of clients therefore
    queues in the router instead of opening one upstream connection per client.
    """

    __slots__ = (
        "_host_header",
        "_idle",
        "_loop",
        "_open",
        "_waiters",
        "connect_timeout",
        "dead_peer_timeout",
        "host",
        "max_connections",
        "port",
        "retired",
    )

    def __init__(
        self,
        host: str,
        port: int,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        dead_peer_timeout: float = DEFAULT_DEAD_PEER_TIMEOUT,
    ):
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be above 0, got {connect_timeout}")
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.dead_peer_timeout = dead_peer_timeout
        self._host_header = f"host: {host}:{port}\r\n".encode("latin-1")
        self._idle: list[_Connection] = []
        self._open = 0  # slots taken: connecting, busy or idle connections
        # a waiter's result: a released connection, or None for a freed slot to connect in
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.retired = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def _connect(self, timeout: float) -> _Connection:
        """Open a connection in a slot the caller holds; the slot is freed on failure."""
        loop = self._loop
        assert loop is not None
        limit = min(timeout, self.connect_timeout)
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self.dead_peer_timeout), self.host, self.port
                ),
                limit,
            )
        except TimeoutError:
            self._free_slot()
            raise UpstreamUnreachable(
                f"cannot connect to {self.host}:{self.port} (no answer within {limit:g}s)"
            ) from None
        except OSError as exc:
            self._free_slot()
            raise UpstreamUnreachable(
                f"cannot connect to {self.host}:{self.port} ({exc.strerror or exc})"
            ) from None
        except BaseException:
            self._free_slot()
            raise
        return conn

    def _acquire_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._free_slot()  # closed by the upstream while idle
        return None

    async def _acquire_new(self, timeout: float) -> tuple[_Connection, bool]:
        """When no idle connection is left: a new one in a free slot, or the first
        connection (or slot) given back while waiting; and whether it is a reused one."""
        if self._open < self.max_connections:
            self._open += 1
            return await self._connect(timeout), False
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        deadline = loop.time() + timeout
        timer = loop.call_later(timeout, self._wait_timed_out, waiter, timeout)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # handed over, but we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        if handed is not None:
            return handed, True
        return await self._connect(max(deadline - loop.time(), 0.001)), False

    def _wait_timed_out(self, waiter: asyncio.Future[_Connection | None], timeout: float) -> None:
        if not waiter.done():
            waiter.set_exception(
                UpstreamTimeout(
                    f"no free connection to {self.host}:{self.port} within {timeout:g}s "
                    f"(all {self.max_connections} busy)"
                )
            )

    def _give_back(self, handed: _Connection | None) -> None:
        if handed is None:
            self._free_slot()
        else:
            self._release(handed)

    def _free_slot(self) -> None:
        """A connection closed (or never opened): its slot goes to a waiter, else back."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._free_slot()

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self.retired:
            self._discard(conn)
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def request(
        self, method: bytes, target: bytes, headers: bytes, body: bytes, timeout: float
    ) -> UpstreamResponse:
        """Send one request; ``headers`` is pre-serialised ``name: value\\r\\n`` lines.

        A reused keep-alive connection that the upstream had already closed is retried
        once on a fresh connection (nothing reached the upstream's application).
        """
        head = b"%s %s HTTP/1.1\r\n%s%scontent-length: %d\r\n\r\n" % (
            method,
            target,
            self._host_header,
            headers,
            len(body),
        )
        data = head + body if body else head
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        conn = self._acquire_idle()
        reused = conn is not None
        if conn is None:
            conn, reused = await self._acquire_new(timeout)
        while True:
            waiter: asyncio.Future[UpstreamResponse] = loop.create_future()
            conn.send(data, waiter)
            timer = loop.call_later(timeout, conn.time_out, timeout)
            try:
                response = await waiter
            except UpstreamTimeout:
                self._discard(conn)
                raise
            except UpstreamError as exc:
                if reused and not conn.got_bytes and not isinstance(exc, UpstreamVanished):
                    reused = False
                    conn.close()  # the slot stays taken for the fresh connection
                    conn = await self._connect(timeout)
                    continue
                self._discard(conn)
                raise
            except BaseException:
                self._discard(conn)  # cancelled mid-request: the connection's state is unknown
                raise
            finally:
                timer.cancel()
            self._release(conn)
            return response

    def close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
            self._free_slot()


class PoolRegistry:
    """One pool per upstream address, shared by successive routing tables.

    A table swap keeps the pools of upstreams still listed (their warm connections
    carry on); pools of upstreams no longer listed are retired: idle connections
    close now, busy ones close when their in-flight request finishes.
    """

    def __init__(
        self,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        dead_peer_timeout: float = DEFAULT_DEAD_PEER_TIMEOUT,
    ) -> None:
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.dead_peer_timeout = dead_peer_timeout
        self._pools: dict[tuple[str, int], UpstreamPool] = {}

    def pool(self, host: str, port: int) -> UpstreamPool:
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None or pool.retired:
            pool = self._pools[key] = UpstreamPool(
                host, port, self.max_connections, self.connect_timeout, self.dead_peer_timeout
            )
        return pool

    def keep_only(self, addresses: set[tuple[str, int]]) -> None:
        for key in list(self._pools):
            if key not in addresses:
                pool = self._pools.pop(key)
                pool.retired = True
                pool.close_idle()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.retired = True
            pool.close_idle()
        self._pools.clear()
