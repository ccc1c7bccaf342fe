"""`pilotage serve`: serve one model version over KServe V1 and the Open Inference Protocol."""

from __future__ import annotations

import argparse
import gc
import hashlib
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from pilotage import guard
from pilotage.listening import listen
from pilotage.server.app import ServerApp, ServerOptions
from pilotage.server.model import ModelLoadError, load_model


def _bounded(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside [{low:g}, {high:g}]")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilotage serve", description="Serve one ONNX model version (KServe V1 + V2)."
    )
    p.add_argument(
        "--model-uri", required=True, help="model directory: file://, pvc://, s3://, https://"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_bounded(int, 0, 65535), default=8080)
    p.add_argument("--name", help="model name in URLs (default: the model card's name)")
    p.add_argument(
        "--threads",
        type=_bounded(int, 1, 256),
        default=1,
        help="onnxruntime intra- and inter-op threads (default 1)",
    )
    p.add_argument(
        "--max-batch-size",
        type=_bounded(int, 1, 65536),
        default=1,
        help="rows merged into one onnxruntime call; 1 turns batching off (default)",
    )
    p.add_argument(
        "--max-batch-wait-us",
        type=_bounded(int, 0, 1_000_000),
        default=500,
        help="longest wait for a batch to fill while requests are arriving (default 500)",
    )
    p.add_argument(
        "--inference-thread",
        action="store_true",
        help="run onnxruntime on one worker thread so that a slow model does not hold up "
        "the event loop (health checks, metrics); batching feeds it",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_bounded(int, 1024, 1 << 31),
        default=8 * 1024 * 1024,
        help="larger request bodies get 413 (default 8 MiB)",
    )
    p.add_argument(
        "--max-rows",
        type=_bounded(int, 1, 10_000_000),
        default=10_000,
        help="rows scored per request at most; more get 413, a JSON body while it arrives "
        "(default 10000)",
    )
    p.add_argument(
        "--max-inflight-body-bytes",
        type=_bounded(int, 1024, 1 << 40),
        default=guard.DEFAULT_INFLIGHT_BODY_BYTES,
        help="request bodies held at once, all requests together; past it 503 "
        f"(default {guard.DEFAULT_INFLIGHT_BODY_BYTES})",
    )
    p.add_argument(
        "--max-connections",
        type=_bounded(int, 1, 1_000_000),
        default=guard.DEFAULT_MAX_CONNECTIONS,
        help="client connections open at once; more are answered 503 and closed "
        f"(default {guard.DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--header-timeout",
        type=_bounded(float, 0.1, 3600),
        default=guard.DEFAULT_HEADER_TIMEOUT_S,
        help="seconds a client has to send a request's headers "
        f"(default {guard.DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--body-timeout",
        type=_bounded(float, 0.1, 3600),
        default=guard.DEFAULT_BODY_TIMEOUT_S,
        help="seconds a client has to send a request's whole body "
        f"(default {guard.DEFAULT_BODY_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--reservoir-size",
        type=_bounded(int, 0, 1_000_000),
        default=1000,
        help="recent rows kept for drift statistics (default 1000)",
    )
    p.add_argument(
        "--strict-schema",
        action="store_true",
        help="answer 400 to a value outside the Dataset schema (min, max, int, bool); "
        "by default such values are scored and counted "
        "(pilotage_feature_out_of_schema_total)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where remote model files are downloaded (default: a temporary folder)",
    )
    p.add_argument(
        "--enable-fault-injection",
        action="store_true",
        help="allow fault injection (--inject-* and /admin/faults); for tests and demos only",
    )
    p.add_argument(
        "--inject-latency-ms",
        type=_bounded(float, 0, 600_000),
        default=0.0,
        help="fault injection: add this many ms to every inference request "
        "(needs --enable-fault-injection)",
    )
    p.add_argument(
        "--inject-serial-latency-ms",
        type=_bounded(float, 0, 600_000),
        default=0.0,
        help="fault injection: hold the server's one slot this many ms per inference "
        "request, so that concurrent requests queue (needs --enable-fault-injection)",
    )
    p.add_argument(
        "--inject-error-rate",
        type=_bounded(float, 0, 1),
        default=0.0,
        help="fault injection: answer this share of inference requests with 500 "
        "(needs --enable-fault-injection)",
    )
    p.add_argument("--fault-seed", type=int, default=0, help="seed of the injected errors")
    return p  # fmt: skip


def _cache_dir(given: Path | None, uri: str) -> Path:
    base = given or Path(tempfile.gettempdir()) / "pilotage-models"
    return base / hashlib.sha256(uri.encode()).hexdigest()[:16]


def _fault_options_without_flag(args: argparse.Namespace) -> list[str]:
    """The fault-injection options given although fault injection is off."""
    if args.enable_fault_injection:
        return []
    given = {
        "--inject-latency-ms": args.inject_latency_ms != 0,
        "--inject-serial-latency-ms": args.inject_serial_latency_ms != 0,
        "--inject-error-rate": args.inject_error_rate != 0,
        "--fault-seed": args.fault_seed != 0,
    }
    return [option for option, used in given.items() if used]


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    refused = _fault_options_without_flag(args)
    if refused:
        print(
            f"pilotage serve: error: {', '.join(refused)} needs --enable-fault-injection "
            "(fault injection is off unless asked for)",
            file=sys.stderr,
        )
        return 2
    if args.enable_fault_injection:
        print(
            "pilotage serve: warning: fault injection is ON (--enable-fault-injection): "
            "POST /admin/faults can slow or fail inference without authentication; "
            "never use this in production",
            file=sys.stderr,
            flush=True,
        )
    try:  # before loading: a port in use is known at once, as one line
        listener = listen(args.host, args.port)
    except OSError as exc:
        print(f"pilotage serve: error: {exc}", file=sys.stderr)
        return 1
    print(f"pilotage serve: loading {args.model_uri}", file=sys.stderr, flush=True)
    try:
        model = load_model(args.model_uri, _cache_dir(args.cache_dir, args.model_uri), args.threads)
    except ModelLoadError as exc:
        listener.close()
        print(f"pilotage serve: error: {exc}", file=sys.stderr)
        return 1
    options = ServerOptions(
        name=args.name,
        max_batch_size=args.max_batch_size,
        max_batch_wait_us=args.max_batch_wait_us,
        inference_thread=args.inference_thread,
        max_body_bytes=args.max_body_bytes,
        max_inflight_body_bytes=args.max_inflight_body_bytes,
        max_rows=args.max_rows,
        reservoir_size=args.reservoir_size,
        strict_schema=args.strict_schema,
        fault_injection=args.enable_fault_injection,
        inject_latency_ms=args.inject_latency_ms,
        inject_serial_latency_ms=args.inject_serial_latency_ms,
        inject_error_rate=args.inject_error_rate,
        fault_seed=args.fault_seed,
    )
    app = ServerApp(model, options)
    try:
        app.engine.warm_up()
    except RuntimeError as exc:
        listener.close()
        print(f"pilotage serve: error: {exc}", file=sys.stderr)
        return 1
    card = model.card
    print(
        f"pilotage serve: model {app.name!r} version {card.version} ({card.task}, "
        f"{len(card.features)} features) warmed up; listening on "
        f"http://{args.host}:{listener.getsockname()[1]}",
        file=sys.stderr,
        flush=True,
    )
    limits = guard.Limits(args.header_timeout, args.body_timeout, args.max_connections)
    return run_uvicorn(app, listener, limits)


# Objects allocated (not freed) between two generation-0 collections. Python's default,
# 700, is below what 64 batched requests in flight hold at once, so under load it ran a
# young collection every few batches (and a full one every ~0.4 s); a request's garbage
# is freed by reference counting, so a higher threshold only makes collections rarer.
YOUNG_COLLECTION_THRESHOLD = 20_000


def settle_collector() -> None:
    """Once the server is up: move everything alive now (the model, the modules uvicorn
    imported while starting, its listeners) out of the collector's reach, so that the
    collections that traffic triggers walk only young objects; and collect rarely."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def run_uvicorn(app: ServerApp, listener: socket.socket, limits: guard.Limits | None = None) -> int:
    import uvicorn

    class _GracefulServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            settle_collector()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after draining; a graceful stop should exit 0
            self._captured_signals.clear()

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - platforms without uvloop
        loop = "asyncio"
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=guard.guarded_protocol(limits or guard.Limits()),
        access_log=False,
        log_level="info",
        lifespan="on",
        server_header=False,
    )
    server = _GracefulServer(config)
    try:
        server.run(sockets=[listener])
    except SystemExit as exc:  # uvicorn exits this way when it cannot bind
        return int(exc.code or 1)
    return 0 if server.started else 1
