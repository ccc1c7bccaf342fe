"""Control-plane side of the router: push a routing table, read routes and stats.

Plain ``urllib`` (no extra dependency, not on any hot path); blocking, so call it from
a thread in async code (``asyncio.to_thread``). Every call has a timeout.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any


class RouterAdminError(RuntimeError):
    """The router refused or could not be reached; ``status`` is the HTTP code (0: unreachable)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def _call(
    method: str, url: str, token: str | None, body: Mapping[str, Any] | None, timeout: float
) -> Any:
    data = None if body is None else json.dumps(dict(body)).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", "")
        except ValueError:
            detail = ""
        raise RouterAdminError(
            f"{method} {url}: HTTP {exc.code} {detail}".strip(), exc.code
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RouterAdminError(f"{method} {url}: {getattr(exc, 'reason', exc)}") from None


def push_routes(
    admin_url: str, token: str, doc: Mapping[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """PUT a routing document to one router's admin port.

    Returns ``{"applied": bool, "generation": int, "revision": str | None}``; ``applied``
    is False when the router already had exactly this table.
    """
    result: dict[str, Any] = _call(
        "PUT", admin_url.rstrip("/") + "/admin/routes", token, doc, timeout
    )
    return result


def get_routes(admin_url: str, token: str, timeout: float = 5.0) -> dict[str, Any]:
    """The active routing document plus its ``generation``."""
    result: dict[str, Any] = _call(
        "GET", admin_url.rstrip("/") + "/admin/routes", token, None, timeout
    )
    return result


def get_stats(admin_url: str, token: str, timeout: float = 5.0) -> dict[str, Any]:
    """Stats JSON from the admin port (the public port serves no internals)."""
    result: dict[str, Any] = _call(
        "GET", admin_url.rstrip("/") + "/admin/stats", token, None, timeout
    )
    return result
