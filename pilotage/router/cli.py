"""`pilotage route`: run the traffic router of one ModelDeployment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from pilotage import guard
from pilotage.guard import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_INFLIGHT_BODY_BYTES,
    BodyBudget,
    Limits,
    guarded_protocol,
)
from pilotage.listening import listen
from pilotage.router.app import MAX_BODY_BYTES, AdminToken, RouterApp
from pilotage.router.state import RouterState
from pilotage.router.table import load_table_file
from pilotage.router.upstream import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DEAD_PEER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
)
from pilotage.router.watcher import DEFAULT_INTERVAL, FileWatcher
from pilotage.wire.routes import RoutingError

log = logging.getLogger("pilotage.router")

ADMIN_TOKEN_ENV = "PILOTAGE_ROUTER_ADMIN_TOKEN"
FEEDBACK_TOKEN_ENV = "PILOTAGE_ROUTER_FEEDBACK_TOKEN"
VARIANT_TOKEN_ENV = "PILOTAGE_ROUTER_VARIANT_TOKEN"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilotage route",
        description="Route V1/V2 inference traffic of one deployment across model variants "
        "(canary, blue-green, shadow). See docs/routing.md.",
    )
    p.add_argument(
        "--config",
        required=True,
        type=Path,
        help="routing file (YAML or JSON); watched for changes",
    )
    p.add_argument("--port", required=True, type=int, help="public port")
    p.add_argument("--host", default="127.0.0.1", help="public address (default 127.0.0.1)")
    p.add_argument("--admin-port", type=int, help="admin API port (disabled when absent)")
    p.add_argument("--admin-host", help="admin address (default: --host)")
    p.add_argument(
        "--admin-token-file",
        type=Path,
        help=f"file holding the admin bearer token (re-read when it changes); or set ${ADMIN_TOKEN_ENV}",
    )
    p.add_argument(
        "--feedback-token-file",
        type=Path,
        help="file holding the bearer token that public POST /v1/feedback needs (re-read when "
        f"it changes); or set ${FEEDBACK_TOKEN_ENV}; without one public feedback is open "
        "(the admin port's POST /admin/feedback always needs the admin token)",
    )
    p.add_argument(
        "--variant-token-file",
        type=Path,
        help="file holding the token that x-pilotage-variant-token must carry to force a "
        f"variant with x-pilotage-variant (for testing); or set ${VARIANT_TOKEN_ENV}; "
        "without one forcing a variant is off (403)",
    )
    p.add_argument(
        "--watch-interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="seconds between routing-file checks",
    )
    p.add_argument(
        "--shadow-queue",
        type=int,
        default=256,
        help="shadow copies waiting at most (more are dropped)",
    )
    p.add_argument(
        "--shadow-workers", type=int, default=8, help="shadow requests in flight at most"
    )
    p.add_argument(
        "--max-connections-per-upstream",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="connections to one upstream at most (busy and idle); more requests wait for one "
        f"(default {DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        help="seconds to open a connection to a replica; past it the replica is taken out "
        "and the request goes to another one (nothing was sent) "
        f"(default {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    p.add_argument(
        "--dead-peer-timeout",
        type=float,
        default=DEFAULT_DEAD_PEER_TIMEOUT,
        help="seconds without a TCP acknowledgement from a replica (its host or network "
        "vanished) before a request sent to it is given up and, when safe to repeat, sent "
        f"to another replica; 0 leaves it to the route timeout (default {DEFAULT_DEAD_PEER_TIMEOUT:g})",
    )
    p.add_argument(
        "--recent-answers", type=int, default=10_000, help="answers remembered for feedback"
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help=f"larger request bodies get 413, a larger Content-Length at once (default {MAX_BODY_BYTES})",
    )
    p.add_argument(
        "--max-inflight-body-bytes",
        type=int,
        default=DEFAULT_INFLIGHT_BODY_BYTES,
        help="request bodies held at once, all requests together; past it 503 "
        f"(default {DEFAULT_INFLIGHT_BODY_BYTES})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=guard.DEFAULT_MAX_CONNECTIONS,
        help="client connections open at once; more are answered 503 and closed "
        f"(default {guard.DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT_S,
        help=f"seconds a client has to send a request's headers (default {DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT_S,
        help=f"seconds a client has to send a request's whole body (default {DEFAULT_BODY_TIMEOUT_S:g})",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _optional_token(path: Path | None, env_name: str) -> AdminToken | None:
    if path is not None:
        try:
            return AdminToken(path)
        except OSError as exc:
            raise ValueError(
                f"{path}: cannot read the token file ({exc.strerror or exc})"
            ) from None
    env = os.environ.get(env_name, "").strip()
    return AdminToken(None, env) if env else None


def _admin_token(args: argparse.Namespace) -> AdminToken | None:
    if args.admin_port is None:
        return None
    if args.admin_port == 0:
        # port 0 would bind a random port that never matches the admin dispatch: the
        # public proxy would answer there without a token
        raise ValueError("--admin-port 0: the admin API needs a fixed port (1-65535)")
    if args.admin_port == args.port:
        # whatever the hosts, a request is told admin from public by its port alone
        raise ValueError(
            f"--admin-port {args.admin_port} is the public --port too: give the admin API "
            "its own port"
        )
    token = _optional_token(args.admin_token_file, ADMIN_TOKEN_ENV)
    if token is None:
        raise ValueError(
            f"--admin-port needs a token: --admin-token-file FILE or ${ADMIN_TOKEN_ENV}"
        )
    return token


async def _serve(
    args: argparse.Namespace,
    state: RouterState,
    sockets: list[socket.socket],
    token: AdminToken | None,
) -> None:
    import uvicorn

    app = RouterApp(
        state,
        admin_port=args.admin_port,
        admin_token=token,
        feedback_token=_optional_token(args.feedback_token_file, FEEDBACK_TOKEN_ENV),
        variant_token=_optional_token(args.variant_token_file, VARIANT_TOKEN_ENV),
        max_body_bytes=args.max_body_bytes,
        budget=BodyBudget(args.max_inflight_body_bytes),
    )
    limits = Limits(args.header_timeout, args.body_timeout, args.max_connections)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        lifespan="off",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        date_header=False,
        log_config=None,
        log_level="warning",
        timeout_keep_alive=75,
        backlog=2048,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            # here, not after serve(): uvicorn re-raises SIGTERM once serve() returns, and
            # what the inference log holds must be written before the process goes
            if not await asyncio.to_thread(state.close_logs):
                log.error("inference log: not all records written before shutdown")

    server = Server(config)
    watcher = FileWatcher(args.config, state, args.watch_interval)
    watcher.start()
    state.mirror.start()
    try:
        await server.serve(sockets=sockets)
    finally:
        watcher.stop()
        await state.mirror.stop()
        state.pools.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        for flag, value, least in (
            ("--max-connections-per-upstream", args.max_connections_per_upstream, 1),
            # asyncio.Queue(0) has no bound at all: a slow shadow would hold every copy
            ("--shadow-queue", args.shadow_queue, 1),
            ("--shadow-workers", args.shadow_workers, 1),
            ("--recent-answers", args.recent_answers, 0),
            ("--max-body-bytes", args.max_body_bytes, 1024),
            ("--max-inflight-body-bytes", args.max_inflight_body_bytes, 1024),
            ("--max-connections", args.max_connections, 1),
            ("--header-timeout", args.header_timeout, 0.1),
            ("--body-timeout", args.body_timeout, 0.1),
            ("--connect-timeout", args.connect_timeout, 0.01),
            ("--dead-peer-timeout", args.dead_peer_timeout, 0),
        ):
            if value < least:
                raise ValueError(f"{flag} must be at least {least}, got {value}")
        table = load_table_file(args.config)
        token = _admin_token(args)
        # read now: a missing token file is one line at start, not a crash later
        _optional_token(args.feedback_token_file, FEEDBACK_TOKEN_ENV)
        _optional_token(args.variant_token_file, VARIANT_TOKEN_ENV)
        sockets = [listen(args.host, args.port, "public port")]
        if args.admin_port is not None:
            sockets.append(listen(args.admin_host or args.host, args.admin_port, "admin port"))
    except (RoutingError, OSError, ValueError) as exc:
        print(f"pilotage route: {exc}", file=sys.stderr)
        return 2
    state = RouterState(
        table,
        "file",
        shadow_capacity=args.shadow_queue,
        shadow_workers=args.shadow_workers,
        recent_capacity=args.recent_answers,
        max_connections_per_upstream=args.max_connections_per_upstream,
        connect_timeout=args.connect_timeout,
        dead_peer_timeout=args.dead_peer_timeout,
    )
    admin = (
        f"; admin API on {args.admin_host or args.host}:{args.admin_port}"
        if args.admin_port
        else ""
    )
    print(
        f"pilotage route: {table.deployment} ({table.mode}, weights {table.weights()}) "
        f"on http://{args.host}:{args.port}{admin}",
        flush=True,
    )
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(args, state, sockets, token))
    return 0
