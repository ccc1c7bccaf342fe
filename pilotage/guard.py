"""Limits every data-plane HTTP server applies to its clients (router and model server).

* ``guarded_protocol(limits)``: uvicorn's httptools protocol with a header timeout (a
  connection must deliver its request headers within ``header_timeout`` seconds of
  opening or of the first byte of a request), a body timeout (the whole body within
  ``body_timeout`` seconds of the headers) and a cap on open connections (beyond
  ``max_connections`` a new connection is answered 503 and closed at once). A timed-out
  connection is closed: the application sees ``http.disconnect`` and drops the request.
* ``BodyBudget``: the bytes of request bodies a process holds at once. A request whose
  body does not fit is answered 503 before its body is read; a declared Content-Length
  over the per-request limit is refused (413) before anything is read.

See docs/security.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pilotage.guard")

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_INFLIGHT_BODY_BYTES = 128 * 1024 * 1024

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


@dataclass(frozen=True)
class Limits:
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS


class GuardCounters:
    """How many connections the guard closed, by reason (process-wide)."""

    header_timeouts = 0
    body_timeouts = 0
    refused_connections = 0


def guarded_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """An uvicorn HTTP protocol class that applies ``limits`` (pass it as ``http=``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    busy_body = (
        b'{"error": "too many connections: this server holds at most %d at once"}'
        % limits.max_connections
    )
    busy = _BUSY % (len(busy_body), busy_body)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _refused = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self._refused = True
                GuardCounters.refused_connections += 1
                transport.write(busy)
                transport.close()
                return
            self._arm(limits.header_timeout, "header")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._timer is None:
                self._arm(limits.header_timeout, "header")

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            self._arm(limits.body_timeout, "body")

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # uvicorn's keep-alive timer governs the idle time until the next request

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expired, what)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self, what: str) -> None:
            self._timer = None
            if what == "header":
                GuardCounters.header_timeouts += 1
            else:
                GuardCounters.body_timeouts += 1
            log.debug("closing a connection: its request %s took too long", what)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    return GuardedHttpToolsProtocol


class BodyBudget:
    """The bytes of request bodies held at once by this process, bounded."""

    __slots__ = ("held", "limit", "refused")

    def __init__(self, limit: int = DEFAULT_INFLIGHT_BODY_BYTES):
        self.limit = limit
        self.held = 0
        self.refused = 0

    def reserve(self, n: int) -> bool:
        if self.held + n > self.limit:
            self.refused += 1
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held -= n

    def busy_message(self) -> str:
        return (
            f"busy: request bodies in flight would exceed {self.limit} bytes "
            "(--max-inflight-body-bytes); retry later"
        )


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length, or None when absent (chunked) or not a number."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
