"""The one client of the router's admin API: push a routing table, read routes and stats.

Used by ``pilotage route`` tests and tools, the operator (one router pod at a time, by
pod IP) and the embedded runtime (its routers on 127.0.0.1). Plain ``urllib`` (no extra
dependency, not on any hot path); blocking, so call it from a thread in async code
(``asyncio.to_thread``). Every call has a timeout and a bearer token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

ROUTES_PATH = "/admin/routes"
STATS_PATH = "/admin/stats"
ACTIVATIONS_PATH = "/admin/activations"


class RouterAdminError(RuntimeError):
    """The router refused or could not be reached.

    ``status`` is the HTTP code (0: unreachable or not JSON); ``error`` the router's own
    words (the ``error`` of its JSON answer, else the status line) for an HTTP error.
    """

    def __init__(self, message: str, status: int = 0, error: str = ""):
        super().__init__(message)
        self.status = status
        self.error = error

    @property
    def refused(self) -> bool:
        """The router refused the request itself (a 4xx other than 401/403): retrying the
        same body cannot help, and ``error`` says why."""
        return 400 <= self.status < 500 and self.status not in (401, 403)


def _error_field(body: bytes) -> str:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return ""
    return str(doc["error"]) if isinstance(doc, dict) and doc.get("error") else ""


def call(
    method: str,
    url: str,
    token: str | None,
    body: Mapping[str, Any] | None = None,
    timeout: float = 5.0,
) -> Any:
    """One admin request; the decoded JSON answer (None for an empty one)."""
    data = None if body is None else json.dumps(dict(body)).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = _error_field(exc.read())
        except OSError:
            detail = ""
        raise RouterAdminError(
            f"{method} {url}: HTTP {exc.code} {detail}".strip(),
            exc.code,
            detail or f"HTTP {exc.code} {exc.reason}",
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RouterAdminError(f"{method} {url}: {getattr(exc, 'reason', exc)}") from None


def _object(method: str, url: str, answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise RouterAdminError(f"{method} {url}: expected a JSON object, got {answer!r:.80}")
    return answer


def push_routes(
    admin_url: str, token: str, doc: Mapping[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """PUT a routing document to one router's admin port.

    Returns ``{"applied": bool, "generation": int, "revision": str | None}``; ``applied``
    is False when the router already had exactly this table.
    """
    url = admin_url.rstrip("/") + ROUTES_PATH
    return _object("PUT", url, call("PUT", url, token, doc, timeout))


def get_routes(admin_url: str, token: str, timeout: float = 5.0) -> dict[str, Any]:
    """The active routing document plus its ``generation``."""
    url = admin_url.rstrip("/") + ROUTES_PATH
    return _object("GET", url, call("GET", url, token, None, timeout))


def get_stats(admin_url: str, token: str, timeout: float = 5.0) -> dict[str, Any]:
    """The stats document (``pilotage.wire.router_stats``) from the admin port (the public
    port serves no internals)."""
    url = admin_url.rstrip("/") + STATS_PATH
    return _object("GET", url, call("GET", url, token, None, timeout))


def wait_activations(
    admin_url: str, token: str, wait: float, timeout: float | None = None
) -> dict[str, Any]:
    """Long poll: the router answers as soon as a request is held for a variant at zero
    replicas (or after ``wait`` seconds) with the held counts per variant (``held``)."""
    url = f"{admin_url.rstrip('/')}{ACTIVATIONS_PATH}?wait={wait:g}"
    answer = call("GET", url, token, None, wait + 5 if timeout is None else timeout)
    return _object("GET", url, answer)
