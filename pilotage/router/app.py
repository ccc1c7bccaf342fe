"""The router's raw ASGI application: the public inference surface and the admin API.

One uvicorn server listens on two sockets; a request that arrived on the admin port
(``scope["server"]`` is the local address) goes to the admin handler, everything else
is public. Public routes the router answers itself:

* ``GET /metrics``             Prometheus text
* ``GET /pilotage/healthz``    the router process is up (for probes)
* ``POST /v1/feedback``        ground truth for recent answers (a bearer token when the
                               router has a feedback token)

Every other request is proxied to the variant the table picks. The stats JSON (upstream
URLs, reload errors) is only on the admin port; see docs/security.md.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from pilotage.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    lifespan,
    read_body,
    send_body,
    send_json,
)
from pilotage.guard import BodyBudget, declared_length
from pilotage.inferencelog.record import Exchange
from pilotage.router.balance import Replica, Unavailable
from pilotage.router.feedback import FeedbackError, apply_feedback
from pilotage.router.metrics import render_metrics
from pilotage.router.shadow import ShadowCopy
from pilotage.router.state import ActiveTable, Route, RouterState
from pilotage.router.table import decode_document
from pilotage.router.upstream import (
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from pilotage.wire.routes import RoutingError, parse_table

log = logging.getLogger("pilotage.router")

MAX_BODY_BYTES = 16 * 1024 * 1024
VARIANT_HEADER = b"x-pilotage-variant"
VERSION_HEADER = b"x-pilotage-model-version"
VARIANT_TOKEN_HEADER = b"x-pilotage-variant-token"
REQUEST_ID_HEADER = b"x-pilotage-request-id"
MAX_REQUEST_ID = 128

# Hop-by-hop and router-owned headers: never forwarded as received.
_REQUEST_SKIP = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"expect",
        VARIANT_HEADER,
        VARIANT_TOKEN_HEADER,
        REQUEST_ID_HEADER,
    }
)
_RESPONSE_SKIP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        VARIANT_HEADER,
        REQUEST_ID_HEADER,
    }
)
_UPSTREAM_METHODS = {"GET": b"GET", "POST": b"POST", "HEAD": b"GET", "PUT": b"PUT"}
_PRIVATE_PREFIXES = ("/admin/", "/pilotage/")
_RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _is_inference(method: str, path: str) -> bool:
    return method == "POST" and (path.endswith(":predict") or path.endswith("/infer"))


def new_request_id() -> bytes:
    """128 random bits in hex: an id that names an answer cannot be guessed from another
    (feedback is scored by id, so a guessable id would let anyone label others' answers)."""
    return os.urandom(16).hex().encode()


def _valid_request_id(value: bytes) -> bool:
    return (
        0 < len(value) <= MAX_REQUEST_ID and value.isascii() and all(33 <= c < 127 for c in value)
    )


class BodyRefused(Exception):
    """A body the router will not read: ``status`` 413 (too large) or 503 (no budget)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyReader:
    """Reads request bodies within the per-request limit and the process's budget.

    A declared Content-Length over the limit is refused before anything is read, and so
    is one that the budget of bodies in flight cannot hold; a chunked body is counted as
    it arrives. What a request reserved is released by ``release`` when it is done.
    """

    def __init__(self, max_body_bytes: int, budget: BodyBudget):
        self.max_body_bytes = max_body_bytes
        self.budget = budget

    def too_large(self) -> str:
        return f"body: larger than {self.max_body_bytes} bytes (--max-body-bytes)"

    async def read(self, scope: Scope, receive: Receive, held: list[int]) -> bytes:
        """The whole body; ``held[0]`` grows by the bytes reserved (release them later).

        Raises BodyRefused, or ClientGone when the client disconnects before the end of
        the body: a truncated prefix must never be forwarded (it would be scored)."""
        return await read_body(
            receive,
            limit=self.max_body_bytes,
            declared=declared_length(scope["headers"]),
            too_large=lambda _size: BodyRefused(413, self.too_large()),
            busy=lambda: BodyRefused(503, self.budget.busy_message()),
            budget=self.budget,
            held=held,
        )


class AdminToken:
    """A bearer token (admin API, feedback, forced variants), re-read when its file
    changes (rotation)."""

    def __init__(self, path: Path | None, value: str | None = None):
        self._path = path
        self._value = value
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self._reload()

    def _reload(self) -> None:
        assert self._path is not None
        st = self._path.stat()
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            value = self._path.read_text().strip()
            if not value:
                raise ValueError(f"{self._path}: token file is empty")
            self._value = value
            self._stamp = stamp

    def matches(self, presented: str) -> bool:
        if self._path is not None:
            try:
                self._reload()
            except (OSError, ValueError) as exc:
                log.error("token unreadable, keeping the previous one: %s", exc)
        return self._value is not None and hmac.compare_digest(
            presented.encode(), self._value.encode()
        )


class RouterApp:
    def __init__(
        self,
        state: RouterState,
        admin_port: int | None = None,
        admin_token: AdminToken | None = None,
        feedback_token: AdminToken | None = None,
        variant_token: AdminToken | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        budget: BodyBudget | None = None,
    ):
        self.bodies = BodyReader(max_body_bytes, budget or BodyBudget())
        self.state = state
        self.admin_port = admin_port
        self.admin_token = admin_token
        self.feedback_token = feedback_token
        self.variant_token = variant_token
        self._local: dict[
            tuple[str, str], Callable[[Scope, Receive, Send, list[int]], Awaitable[None]]
        ] = {
            ("GET", "/metrics"): self._metrics,
            ("GET", "/pilotage/stats"): self._public_stats,
            ("GET", "/pilotage/healthz"): self._healthz,
            ("POST", "/v1/feedback"): self._public_feedback,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            return
        if self.admin_port is not None and scope["server"][1] == self.admin_port:
            await self._admin(scope, receive, send)
            return
        held = [0]
        try:
            handler = self._local.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send, held)
                return
            if scope["path"].startswith(_PRIVATE_PREFIXES):
                # the servers' own admin endpoints (fault injection...) are not for clients
                await send_json(send, 404, {"error": f"no such endpoint: {scope['path']}"})
                return
            await self._proxy(scope, receive, send, held)
        except ClientGone:
            self.state.registry.incomplete_bodies += 1
        except BodyRefused as exc:
            await send_json(send, exc.status, {"error": str(exc)})
        finally:
            if held[0]:
                self.bodies.budget.release(held[0])

    # ---- the hot path -------------------------------------------------------------
    async def _proxy(self, scope: Scope, receive: Receive, send: Send, held: list[int]) -> None:
        started = time.perf_counter()
        active = self.state.active  # read once: this request keeps this table
        sticky_name = active.sticky_header
        forced: bytes | None = None
        sticky_key: bytes | None = None
        request_id: bytes | None = None
        variant_token: bytes | None = None
        forward: list[bytes] = []
        for name, value in scope["headers"]:
            if name in _REQUEST_SKIP:
                if name == VARIANT_HEADER:
                    forced = value
                elif name == REQUEST_ID_HEADER:
                    request_id = value
                elif name == VARIANT_TOKEN_HEADER:
                    variant_token = value
                continue
            if name == sticky_name:
                sticky_key = value
            forward.append(b"%s: %s\r\n" % (name, value))

        if request_id is None:
            request_id = new_request_id()
        elif not _valid_request_id(request_id):
            await send_json(
                send,
                400,
                {
                    "error": f"x-pilotage-request-id: must be 1-{MAX_REQUEST_ID} visible ASCII characters"
                },
            )
            return
        if forced is not None:
            refusal = self._forcing_refused(variant_token)
            if refusal is not None:
                await send_json(send, 403, {"error": refusal})
                return
            route = active.by_name.get(forced.lower())
            if route is None:
                names = ", ".join(active.routes)
                await send_json(
                    send,
                    400,
                    {
                        "error": f"x-pilotage-variant: no variant {forced.decode('latin-1')!r} in this deployment (have: {names})"
                    },
                )
                return
        else:
            route = active.pick(sticky_key)

        body = await self.bodies.read(scope, receive, held)
        if not route.replicas:
            # the variant is at zero: hold the request until a table gives it a replica
            name = route.variant.name
            try:
                await self.state.activator.hold(name)
            except Unavailable as exc:
                await send_json(
                    send,
                    503,
                    {"error": str(exc)},
                    [(VARIANT_HEADER, route.name_header), (REQUEST_ID_HEADER, request_id)],
                )
                return
            active = self.state.active
            woken = active.routes.get(name)
            if woken is None or not woken.replicas:  # a later table took it away again
                await send_json(
                    send,
                    503,
                    {"error": f"variant {name} has no replica (removed while waiting)"},
                    [(VARIANT_HEADER, route.name_header), (REQUEST_ID_HEADER, request_id)],
                )
                return
            route = woken
            started = time.perf_counter()  # cold starts are measured apart
        forward.append(b"x-pilotage-request-id: %s\r\n" % request_id)
        headers = b"".join(forward)
        method_str: str = scope["method"]
        # HEAD goes upstream as GET: the answer parser cannot know a HEAD answer has no body
        method = _UPSTREAM_METHODS.get(method_str) or method_str.encode()
        path: str = scope["path"]
        query: bytes = scope["query_string"]
        target: bytes = scope["raw_path"] or path.encode()
        if query:
            target = target + b"?" + query

        response, route = await self._call_upstream(
            active, route, forced is None, method_str, path, method, target, headers, body, started
        )
        if isinstance(response, UpstreamError):
            await self._upstream_failed(send, route, request_id, response)
            logger = active.logger
            if (
                logger is not None
                and forced is None
                and _is_inference(method_str, path)
                and logger.sample()
            ):
                logger.offer(
                    Exchange(
                        time.time(), request_id, route.variant.name, route.variant.version,
                        route.variant.url, path, body, response.status, None,
                        time.perf_counter() - started, str(response), False,
                    ),
                    len(body),
                )  # fmt: skip
            return

        out: list[tuple[bytes, bytes]] = []
        has_version = False
        for name, value in response.headers:
            if name in _RESPONSE_SKIP:
                continue
            if name == VERSION_HEADER:
                has_version = True
            out.append((name, value))
        rbody = response.body
        out.append((b"content-length", b"%d" % len(rbody)))
        out.append((VARIANT_HEADER, route.name_header))
        if not has_version:
            out.append((VERSION_HEADER, route.version_header))
        out.append((REQUEST_ID_HEADER, request_id))
        status = response.status
        # Remembered before the answer goes out: a client may send its feedback as soon as
        # it has the answer, before this coroutine runs again after the send.
        remembered = (
            forced is None
            and status < 300
            and _is_inference(method_str, path)
            and self.state.recent.remember(request_id, route.stats, rbody)
        )
        try:
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": rbody})
        except Exception as exc:  # the client got nothing: not a success
            log.error("could not write the answer of %s: %s", route.variant.name, exc)
            if remembered:
                self.state.recent.take(request_id)  # nobody got it: nothing to score
            if forced is None:
                route.stats.unwritten(status)
            return

        if forced is not None:
            return  # a tester's request: no feedback, no shadow copy, not in the analysis
        if not _is_inference(method_str, path):
            return
        logger = active.logger
        if logger is not None and logger.sample():
            logger.offer(
                Exchange(
                    time.time(), request_id, route.variant.name, route.variant.version,
                    route.variant.url, path, body, status, rbody,
                    time.perf_counter() - started, None, False,
                ),
                len(body) + len(rbody),
            )  # fmt: skip
        if status < 300:
            shadow = active.shadow
            replica: Replica | None = None
            if (
                shadow is not None
                and shadow is not route
                and active.sampler is not None
                and active.sampler.take()
                # a shadow at zero is not woken by copies: they are not sent
                and (replica := shadow.replicas.pick()) is not None
            ):
                self.state.mirror.offer(
                    ShadowCopy(
                        replica.pool,
                        shadow.stats,
                        method,
                        target,
                        headers,
                        body,
                        rbody,
                        active.timeout,
                        active.tolerance,
                        logger if logger is not None and logger.config.shadow else None,
                        request_id,
                        path,
                        shadow.variant,
                    )
                )

    async def _call_upstream(
        self,
        active: ActiveTable,
        route: Route,
        may_retry: bool,
        method_str: str,
        path: str,
        method: bytes,
        target: bytes,
        headers: bytes,
        body: bytes,
        started: float,
    ) -> tuple[UpstreamResponse | UpstreamError, Route]:
        """Call ``route``; a failed canary answer is retried once on stable when safe.

        Returns the error instead of an answer when no upstream answered.
        """
        response: UpstreamResponse | UpstreamError
        # a forced request (may_retry False) is a tester's: counted apart, never judged
        stats = route.stats if may_retry else route.stats.forced
        safe = method_str in _RETRYABLE_METHODS or _is_inference(method_str, path)
        response = await self._send_to(route, safe, active.timeout, method, target, headers, body)
        now = time.perf_counter()
        stats.record(response.status, now - started)
        if not isinstance(response, UpstreamError) and response.status < 500:
            return response, route
        fallback = active.fallback
        if (
            not may_retry
            or not active.retry_on_stable
            or fallback is None
            or fallback is route
            or not fallback.replicas
            or not safe
        ):
            return response, route
        route.stats.retried_on_stable += 1
        retried = await self._send_to(fallback, safe, active.timeout, method, target, headers, body)
        fallback.stats.record(retried.status, time.perf_counter() - now)
        return retried, fallback

    @staticmethod
    async def _send_to(
        route: Route,
        safe: bool,
        timeout: float,
        method: bytes,
        target: bytes,
        headers: bytes,
        body: bytes,
    ) -> UpstreamResponse | UpstreamError:
        """Send to the variant's replica with the fewest requests in flight. A replica
        whose connection fails is taken out at once, and the request goes to another
        one of the variant: always when nothing reached the failed one, else when the
        request is safe to repeat (reads, inferences)."""
        replicas = route.replicas
        stats = route.stats
        tried: list[Replica] = []
        error: UpstreamError | None = None
        while (replica := replicas.pick(tried)) is not None:
            tried.append(replica)
            replica.in_flight += 1
            stats.begin()
            try:
                response = await replica.pool.request(method, target, headers, body, timeout)
            except UpstreamError as exc:
                error = exc
                if not isinstance(exc, UpstreamTimeout):
                    replica.failed()  # refused, reset, closed: out of service now
                if isinstance(exc, UpstreamUnreachable) or (
                    safe and not isinstance(exc, UpstreamTimeout)
                ):
                    continue
                return exc
            finally:
                replica.in_flight -= 1
                stats.end()
            replica.succeeded()
            return response
        return error or UpstreamUnreachable(f"variant {route.variant.name} has no replica")

    def _forcing_refused(self, presented: bytes | None) -> str | None:
        """Why x-pilotage-variant may not be honoured, or None when it may."""
        if self.variant_token is None:
            return (
                "x-pilotage-variant: forcing a variant is off on this router (it is for "
                "testing: start the router with --variant-token-file and send the token in "
                "x-pilotage-variant-token)"
            )
        if presented is None:
            return "x-pilotage-variant-token: required to force a variant"
        if not self.variant_token.matches(presented.decode("latin-1").strip()):
            return "x-pilotage-variant-token: token not accepted"
        return None

    async def _upstream_failed(
        self, send: Send, route: Route, request_id: bytes, error: UpstreamError
    ) -> None:
        await send_json(
            send,
            error.status,
            {
                "error": f"upstream {route.variant.name} (version {route.variant.version}) failed: {error}"
            },
            [
                (VARIANT_HEADER, route.name_header),
                (VERSION_HEADER, route.version_header),
                (REQUEST_ID_HEADER, request_id),
            ],
        )

    # ---- router-local public endpoints -------------------------------------------
    async def _metrics(self, scope: Scope, receive: Receive, send: Send, held: list[int]) -> None:
        await send_body(
            send,
            200,
            render_metrics(self.state).encode(),
            [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
        )

    async def _public_stats(
        self, scope: Scope, receive: Receive, send: Send, held: list[int]
    ) -> None:
        # upstream URLs and reload errors are internals: the stats live on the admin port
        await send_json(
            send,
            404,
            {
                "error": "/pilotage/stats: the stats are on the admin port "
                "(GET /admin/stats with the admin token); see docs/security.md"
            },
        )

    async def _healthz(self, scope: Scope, receive: Receive, send: Send, held: list[int]) -> None:
        await send_json(send, 200, {"status": "ok", "generation": self.state.generation})

    async def _public_feedback(
        self, scope: Scope, receive: Receive, send: Send, held: list[int]
    ) -> None:
        if self.feedback_token is not None:
            verdict = _bearer_verdict(scope, self.feedback_token)
            if verdict != 200:
                await self._refuse(send, verdict, "feedback")
                return
        await self._feedback(scope, receive, send, held)

    async def _feedback(self, scope: Scope, receive: Receive, send: Send, held: list[int]) -> None:
        body = await self.bodies.read(scope, receive, held)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await send_json(send, 400, {"error": f"body: malformed JSON ({exc})"})
            return
        try:
            result = apply_feedback(doc, self.state.recent, self.state.registry)
        except FeedbackError as exc:
            await send_json(send, 400, {"error": str(exc)})
            return
        self.state.log_labels(doc)  # a label for an unknown id is written all the same
        await send_json(send, 200, result)

    # ---- admin port --------------------------------------------------------------
    @staticmethod
    async def _refuse(send: Send, verdict: int, what: str) -> None:
        if verdict == 401:
            await send_json(
                send,
                401,
                {"error": f"authorization: bearer token required ({what})"},
                [(b"www-authenticate", b'Bearer realm="pilotage-router"')],
            )
        else:
            await send_json(send, 403, {"error": f"authorization: token not accepted ({what})"})

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        held = [0]
        try:
            await self._admin_call(scope, receive, send, held)
        except ClientGone:
            return
        except BodyRefused as exc:
            await send_json(send, exc.status, {"error": str(exc)})
        finally:
            if held[0]:
                self.bodies.budget.release(held[0])

    async def _admin_call(
        self, scope: Scope, receive: Receive, send: Send, held: list[int]
    ) -> None:
        verdict = _bearer_verdict(scope, self.admin_token)
        if verdict != 200:
            await self._refuse(send, verdict, "admin API")
            return
        key = (scope["method"], scope["path"])
        if key == ("GET", "/admin/routes"):
            await send_json(
                send,
                200,
                {"generation": self.state.generation, **self.state.active.table.to_document()},
            )
        elif key == ("PUT", "/admin/routes"):
            await self._put_routes(scope, receive, send, held)
        elif key == ("GET", "/admin/stats"):
            await send_json(send, 200, self.state.stats_json())
        elif key == ("POST", "/admin/feedback"):
            await self._feedback(scope, receive, send, held)
        elif key == ("GET", "/admin/activations"):
            await self._activations(scope, send)
        elif scope["path"] in (
            "/admin/routes",
            "/admin/stats",
            "/admin/feedback",
            "/admin/activations",
        ):
            await send_json(
                send, 405, {"error": f"method {scope['method']} not allowed on {scope['path']}"}
            )
        else:
            await send_json(
                send,
                404,
                {
                    "error": f"no admin endpoint {scope['path']} "
                    "(have /admin/routes, /admin/stats, /admin/feedback, /admin/activations)"
                },
            )

    async def _activations(self, scope: Scope, send: Send) -> None:
        """Long poll: answers as soon as a request is held for a variant at zero (or after
        `?wait=SECONDS`, at most 60, default 25) with the held counts per variant. The
        control plane keeps one open to be woken at once instead of at its next tick."""
        wait = 25.0
        for part in scope["query_string"].decode("latin-1").split("&"):
            key, _, value = part.partition("=")
            if key == "wait":
                try:
                    wait = float(value)
                except ValueError:
                    wait = -1.0
                if not 0 <= wait <= 60:
                    await send_json(
                        send, 400, {"error": f"wait: must be 0..60 seconds, got {value!r}"}
                    )
                    return
        held = await self.state.activator.wait_for_held(wait)
        await send_json(send, 200, {"held": held})

    async def _put_routes(
        self, scope: Scope, receive: Receive, send: Send, held: list[int]
    ) -> None:
        body = await self.bodies.read(scope, receive, held)
        try:
            table = parse_table(decode_document(body))
        except RoutingError as exc:
            await send_json(send, 400, {"error": str(exc)})
            return
        if table.deployment != self.state.active.table.deployment:
            await send_json(
                send,
                409,
                {
                    "error": f"deployment: this router serves {self.state.active.table.deployment!r}, not {table.deployment!r}"
                },
            )
            return
        outdated = self.state.outdated(table, "admin")
        if outdated is not None:
            await send_json(send, 409, {"error": outdated})
            return
        changed = self.state.apply(table, "admin")
        await send_json(
            send,
            200,
            {"applied": changed, "generation": self.state.generation, "revision": table.revision},
        )


def _bearer_verdict(scope: Scope, token: AdminToken | None) -> int:
    """200 when the bearer token matches, else 401 (none given) or 403 (wrong)."""
    if token is None:
        return 403
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, presented = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not presented:
                return 401
            return 200 if token.matches(presented.strip()) else 403
    return 401
