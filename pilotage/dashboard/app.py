"""The dashboard's raw ASGI application (like the router's: no framework).

Routes:

* ``GET /``                               the resource list
* ``GET /r/KIND/NAMESPACE/NAME``          one resource's page (``?feature=F`` on a monitor)
* ``GET /fragment/…``                     the live part of either page (what the script polls)
* ``GET /api/resources``                  the resources as JSON (kind, name, phase, ready, status)
* ``GET /api/r/KIND/NAMESPACE/NAME``      one resource with its chart series, as JSON
* ``POST /api/actions``                   ``{"action", "namespace", "name", "full"}``: promote,
                                          abort, retry, retrain, refresh — the CLI's function
* ``GET /static/dashboard.{js,css}``      the assets, served from the package (no CDN)
* ``GET /healthz``

A POST must carry ``Content-Type: application/json`` and ``X-Pilotage-Action: 1`` (a cross-site
form cannot send either without a CORS preflight, which this app never grants), and every
request must name a local ``Host`` when the app listens on loopback (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources as package_files
from typing import Any
from urllib.parse import parse_qs, unquote

from pilotage.dashboard import pages
from pilotage.dashboard.history import History
from pilotage.dashboard.source import KINDS, Source, SourceError, read_model_card

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 16 * 1024
CARD_CACHE = 64
CARD_RETRY_S = 30.0
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _asset(name: str) -> bytes:
    return package_files.files("pilotage.dashboard").joinpath("static", name).read_bytes()


class Sampler:
    """Samples every resource's status into the history once per ``interval`` (a thread)."""

    def __init__(self, source: Source, history: History, interval: float = 1.0) -> None:
        self.source = source
        self.history = history
        self.interval = interval
        self.stop_event = threading.Event()
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self, now: float | None = None) -> None:
        try:
            docs = self.source.resources()
        except SourceError as exc:
            self.last_error = str(exc)
            return
        self.last_error = None
        now = time.time() if now is None else now
        for doc in docs:
            self.history.record_status(doc, now)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(5)


class DashboardApp:
    def __init__(
        self,
        source: Source,
        history: History,
        *,
        read_only: bool = False,
        loopback_only: bool = True,
        card_reader: Callable[[str], dict[str, Any] | None] = read_model_card,
    ) -> None:
        self.source = source
        self.history = history
        self.read_only = read_only
        self.loopback_only = loopback_only
        self._card_reader = card_reader
        self._cards: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()
        self._assets = {name: _asset(name) for name in ASSETS}

    # -- helpers ---------------------------------------------------------------------------

    def card(self, uri: str) -> dict[str, Any] | None:
        """A model card by URI; cached (a version's card never changes); a card that could
        not be read is tried again after ``CARD_RETRY_S``, not on every refresh."""
        now = time.monotonic()
        cached = self._cards.get(uri)
        if cached is not None and (cached[1] is not None or now - cached[0] < CARD_RETRY_S):
            self._cards.move_to_end(uri)
            return cached[1]
        card = self._card_reader(uri)
        self._cards[uri] = (now, card)
        while len(self._cards) > CARD_CACHE:
            self._cards.popitem(last=False)
        return card

    async def _docs(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.source.resources)

    @staticmethod
    def _find(docs: list[dict[str, Any]], kind: str, namespace: str, name: str) -> dict[str, Any]:
        if kind not in KINDS:
            raise HttpError(404, f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        for doc in docs:
            if pages.key_of(doc) == (kind, namespace, name):
                return doc
        raise HttpError(404, f"{kind} {name!r} not found in namespace {namespace!r}")

    async def fragment(self, path: str, query: dict[str, list[str]]) -> str:
        docs = await self._docs()
        if path == "list":
            return pages.list_fragment(docs)
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "r":
            raise HttpError(404, f"no page {path!r}")
        kind, namespace, name = (unquote(p) for p in parts[1:])
        doc = self._find(docs, kind, namespace, name)
        events = await asyncio.to_thread(self.source.events, kind, namespace, name)
        now = time.time()
        # the status just read is the newest sample: the charts end where the page's text is
        self.history.record_status(doc, now)
        if kind == "ModelDeployment":
            return pages.deployment_fragment(doc, self.history, events, self.read_only, now)
        card = await asyncio.to_thread(pages.model_card_for, doc, docs, self.card)
        if kind == "DriftMonitor":
            feature = query["feature"][0] if query.get("feature") else None
            return pages.monitor_fragment(
                doc, docs, self.history, events, self.read_only, now, feature, card
            )
        if kind == "TrainingJob":
            return pages.trainingjob_fragment(doc, docs, events, card)
        return pages.dataset_fragment(doc, docs, events, self.read_only)

    async def resource_json(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        docs = await self._docs()
        doc = self._find(docs, kind, namespace, name)
        key = (kind, namespace, name)
        return {
            "resource": doc,
            "series": {
                "status": self.history.status_points(key),
                "router": self.history.router_points(key),
            },
        }

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            self._check_host(scope)
            await self._route(scope, receive, send)
        except HttpError as exc:
            await self._error(send, exc.status, str(exc), scope)
        except SourceError as exc:
            await self._error(send, exc.status, str(exc), scope)

    def _check_host(self, scope: Scope) -> None:
        if not self.loopback_only:
            return
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in LOCAL_HOSTS:
            raise HttpError(403, f"this dashboard answers only on a local address (Host {host!r})")

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if method == "POST" and path == "/api/actions":
            await self._action(scope, receive, send)
            return
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} is not allowed on {path}")
        if path == "/healthz":
            await _send(send, 200, b"ok\n", "text/plain; charset=utf-8")
        elif path.startswith("/static/") and path[8:] in ASSETS:
            await _send(send, 200, self._assets[path[8:]], ASSETS[path[8:]], cache=True)
        elif path == "/":
            body = await self.fragment("list", query)
            html = pages.page(
                "Resources", "/fragment/list", body, self.source.where, self.read_only
            )
            await _send(send, 200, html.encode(), "text/html; charset=utf-8")
        elif path.startswith("/r/"):
            rest = path[1:]
            qs = scope.get("query_string", b"").decode("latin-1")
            body = await self.fragment(rest, query)
            title = " ".join(unquote(p) for p in rest.split("/")[1::2])
            url = f"/fragment/{rest}" + (f"?{qs}" if qs else "")
            html = pages.page(title, url, body, self.source.where, self.read_only)
            await _send(send, 200, html.encode(), "text/html; charset=utf-8")
        elif path.startswith("/fragment/"):
            body = await self.fragment(path[len("/fragment/") :], query)
            await _send(send, 200, body.encode(), "text/html; charset=utf-8")
        elif path == "/api/resources":
            docs = await self._docs()
            items = []
            for doc in docs:
                kind, namespace, name = pages.key_of(doc)
                ready, reason = pages.ready_of(doc)
                status = doc.get("status") or {}
                items.append(
                    {
                        "kind": kind,
                        "namespace": namespace,
                        "name": name,
                        "phase": status.get("phase", "Pending"),
                        "ready": ready,
                        "reason": reason,
                    }
                )
            await _send_json(send, 200, {"items": items})
        elif path.startswith("/api/r/"):
            parts = path[len("/api/r/") :].split("/")
            if len(parts) != 3:
                raise HttpError(404, f"no resource at {path}; use /api/r/KIND/NAMESPACE/NAME")
            kind, namespace, name = (unquote(p) for p in parts)
            await _send_json(send, 200, await self.resource_json(kind, namespace, name))
        else:
            raise HttpError(404, f"no page {path}")

    async def _action(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        if self.read_only:
            raise HttpError(403, "this dashboard is read-only (actions are disabled)")
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip()
        if content_type != b"application/json" or headers.get(b"x-pilotage-action") != b"1":
            raise HttpError(
                400, "an action needs Content-Type: application/json and X-Pilotage-Action: 1"
            )
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                raise HttpError(413, f"request body over {MAX_BODY} bytes")
            if not message.get("more_body"):
                break
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise HttpError(400, f"the body is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise HttpError(400, "the body must be a JSON object")
        missing = [k for k in ("action", "namespace", "name") if not isinstance(doc.get(k), str)]
        if missing:
            raise HttpError(400, f"missing or non-string field(s): {', '.join(missing)}")
        result = await asyncio.to_thread(
            self.source.act, doc["action"], doc["namespace"], doc["name"], bool(doc.get("full"))
        )
        await _send_json(send, 200, {"message": result.message, "warning": result.warning})

    async def _error(self, send: Send, status: int, message: str, scope: Scope) -> None:
        path = scope.get("path", "")
        if path.startswith(("/api/", "/fragment/")):
            if path.startswith("/fragment/"):
                await _send(
                    send, status, pages.error_box(message).encode(), "text/html; charset=utf-8"
                )
            else:
                await _send_json(send, status, {"error": message})
            return
        html = pages.page("Error", "", pages.error_box(message), self.source.where, self.read_only)
        await _send(send, status, html.encode(), "text/html; charset=utf-8")


async def _send(
    send: Send, status: int, body: bytes, content_type: str, cache: bool = False
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"max-age=300" if cache else b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            b"connect-src 'self'; frame-ancestors 'none'",
        ),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, doc: Any) -> None:
    await _send(send, status, json.dumps(doc).encode(), "application/json")
