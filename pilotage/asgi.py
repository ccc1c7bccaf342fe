"""ASGI plumbing shared by the model server and the router (both raw ASGI, no framework):
the lifespan protocol, reading a request body within limits, and sending a reply.

Each app keeps its own words for a refusal: the body reader is handed the exceptions
to raise (``too_large``, ``busy``), so the status codes and messages stay the app's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from pilotage.guard import BodyBudget

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected before its whole body arrived: the request is dropped
    (a truncated prefix must never be used as if it were the body)."""


async def lifespan(
    receive: Receive, send: Send, on_shutdown: Callable[[], None] | None = None
) -> None:
    """Answer the lifespan protocol until shutdown; ``on_shutdown`` runs before it completes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown is not None:
                on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(
    receive: Receive,
    *,
    limit: int,
    declared: int | None,
    too_large: Callable[[int | None], Exception],
    busy: Callable[[], Exception],
    budget: BodyBudget | None = None,
    held: list[int] | None = None,
    on_chunk: Callable[[bytes], None] | None = None,
    before_next: Callable[[list[bytes], int], None] | None = None,
) -> bytes:
    """The whole request body, at most ``limit`` bytes.

    A ``declared`` Content-Length over the limit raises ``too_large(declared)`` before
    anything is read; with a ``budget``, it is reserved first (``busy()`` when it does not
    fit) and ``held[0]`` grows by what was reserved, for the caller to release. A chunked
    body (or one longer than declared) is counted as it arrives: ``too_large(None)`` past
    the limit, reserved as it grows. ``on_chunk`` sees every chunk before it is counted;
    ``before_next`` sees the chunks so far and their size before more is awaited.
    A disconnect before the end of the body raises ClientGone."""
    if declared is not None:
        if declared > limit:
            raise too_large(declared)
        if budget is not None and held is not None:
            if not budget.reserve(declared):
                raise busy()
            held[0] += declared
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if on_chunk is not None:
        on_chunk(body)
    if not message.get("more_body", False):
        return body
    parts = [body]
    size = len(body)
    while True:
        if before_next is not None:
            before_next(parts, size)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        if on_chunk is not None:
            on_chunk(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(None)
        if budget is not None and held is not None and size > held[0]:
            if not budget.reserve(size - held[0]):
                raise busy()
            held[0] = size
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    """One complete reply. With a content-length uvicorn writes the body as it is; without
    one it frames it as a chunked stream (an extra join per response, more on the wire)."""
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, doc: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """``doc`` as a JSON reply, with ``extra`` headers."""
    await send_body(send, status, orjson.dumps(doc), [*JSON_HEADERS, *(extra or [])])
