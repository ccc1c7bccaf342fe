"""The raw ASGI application: routing, request bodies, inference, metrics, errors.

One process, one event loop. onnxruntime runs on the loop thread by default, or on one
worker thread with ``inference_thread`` (see batching.py); everything else, drift
counting and metrics included, stays on the loop thread.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from pilotage.asgi import ClientGone, Receive, Scope, Send, lifespan, send_body
from pilotage.asgi import read_body as receive_body
from pilotage.guard import DEFAULT_INFLIGHT_BODY_BYTES, BodyBudget
from pilotage.server import openapi
from pilotage.server.batching import Batcher, Call, timed_call
from pilotage.server.bounds import JsonShape
from pilotage.server.drift import DriftCounter
from pilotage.server.engine import Engine, Prediction
from pilotage.server.errors import RequestError, bad_request, not_found
from pilotage.server.faults import Faults
from pilotage.server.metrics import ServerMetrics
from pilotage.server.model import LoadedModel
from pilotage.server.responses import (
    CLOSE_JSON_HEADERS,
    JSON_HEADERS,
    TEXT_HEADERS,
    dumps,
    error_body,
    json_labels,
    v2_outputs,
)
from pilotage.server.rows import Rows, RowSchema
from pilotage.server.v1 import rows_from_v1
from pilotage.server.v2 import parse_request, precheck_header, rows_from_tensors, split_binary

log = logging.getLogger("pilotage.server")

SERVER_NAME = "pilotage"
EXTENSIONS = ["binary_tensor_data"]
V1_PREFIX = "/v1/models/"
# Rows from which an inference runs on a thread rather than on the event loop.
OFF_LOOP_ROWS = 256
V2_PREFIX = "/v2/models/"


def package_version() -> str:
    try:
        return importlib.metadata.version("pilotage")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass
class ServerOptions:
    name: str | None = None
    max_batch_size: int = 1
    max_batch_wait_us: int = 500
    inference_thread: bool = False  # onnxruntime on one worker thread, not the loop's
    max_body_bytes: int = 8 * 1024 * 1024
    max_inflight_body_bytes: int = DEFAULT_INFLIGHT_BODY_BYTES
    max_rows: int = 10_000
    reservoir_size: int = 1000
    strict_schema: bool = False  # refuse values outside the Dataset schema with a 400
    fault_injection: bool = False  # off: no /admin/faults (404), no injected faults
    inject_latency_ms: float = 0.0
    inject_serial_latency_ms: float = 0.0
    inject_error_rate: float = 0.0
    fault_seed: int = 0


class ServerApp:
    def __init__(self, model: LoadedModel, options: ServerOptions) -> None:
        card = model.card
        self.model = model
        self.options = options
        self.name = options.name or card.name
        self.version = card.version
        self.card_body = card.model_dump_json(by_alias=True).encode()
        self.schema = RowSchema(card)
        self.engine = Engine(model, self.schema)
        self.budget = BodyBudget(options.max_inflight_body_bytes)
        self.drift = DriftCounter(card, self.schema, options.reservoir_size)
        self.batching = options.max_batch_size > 1
        self.metrics = ServerMetrics(self.name, self.version, self.drift, self.batching)
        self.faults = (
            Faults(
                options.inject_latency_ms,
                options.inject_error_rate,
                options.fault_seed,
                options.inject_serial_latency_ms,
            )
            if options.fault_injection
            else None
        )
        self.worker = (
            ThreadPoolExecutor(1, thread_name_prefix="pilotage-inference")
            if options.inference_thread
            else None
        )
        self.batcher = (
            Batcher(
                self.engine.predict,
                self.record,
                options.max_batch_size,
                options.max_batch_wait_us,
                self.worker,
            )
            if self.batching or self.worker is not None
            else None
        )
        if self.batcher is not None and self.worker is not None:
            batcher = self.batcher
            self.metrics.inference_running = lambda: int(batcher.running)
        example = self.engine.typical_row()
        example_row = [
            example.categorical[self.schema.slot[f.name]][0]
            if f.type == "category"
            else float(example.numeric[0, self.schema.slot[f.name]])
            for f in self.schema.features
        ]
        self.openapi_body = dumps(
            openapi.document(
                self.name,
                self.version,
                self.schema.names,
                example_row,
                fault_injection=self.faults is not None,
            )
        )
        self.metadata_body = dumps(self._metadata())

    # ---- ASGI entry -----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await lifespan(receive, send, self._shutdown)

    def _shutdown(self) -> None:
        if self.worker is not None:
            self.worker.shutdown(wait=False)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path.startswith(V2_PREFIX):
                await self._v2_model(method, path[len(V2_PREFIX) :], scope, receive, send)
            elif path.startswith(V1_PREFIX):
                await self._v1_model(method, path[len(V1_PREFIX) :], scope, receive, send)
            else:
                await self._other(method, path, scope, receive, send)
        except RequestError as exc:
            await send_body(send, exc.status, error_body(exc.message))
        except ClientGone:
            return
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            await send_body(send, 500, error_body("internal server error; see the server log"))

    # ---- routing --------------------------------------------------------------------

    async def _v2_model(
        self, method: str, rest: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        parts = rest.split("/")
        name = parts[0]
        if len(parts) >= 3 and parts[1] == "versions":
            version: str | None = parts[2]
            action = parts[3:]
        else:
            version = None
            action = parts[1:]
        if action == ["infer"]:
            await self._infer("v2", method, name, version, scope, receive, send)
            return
        if len(action) > 1 or (action and action[0] != "ready"):
            raise not_found(f"no such endpoint: {scope['path']}")
        require(method, "GET", scope)
        self._check_model(name, version)
        if action:
            await send_body(send, 200, dumps({"name": self.name, "ready": True}))
        else:
            await send_body(send, 200, self.metadata_body)

    async def _v1_model(
        self, method: str, rest: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if rest.endswith(":predict"):
            await self._infer("v1", method, rest[: -len(":predict")], None, scope, receive, send)
            return
        parts = rest.split("/")
        if len(parts) == 1:
            require(method, "GET", scope)
            self._check_model(parts[0], None)
            body = {"name": self.name, "version": self.version, "ready": True}
            await send_body(send, 200, dumps(body))
        elif len(parts) == 2 and parts[1] == "drift":
            require(method, "GET", scope)
            self._check_model(parts[0], None)
            snapshot = self.drift.snapshot(self.name, self.version).to_doc()
            await send_body(send, 200, dumps(snapshot))
        elif len(parts) == 2 and parts[1] == "card":
            # The control plane reads the baseline here: on Kubernetes the artifact claim
            # lives in the workload's namespace, which the operator's pod cannot mount.
            require(method, "GET", scope)
            self._check_model(parts[0], None)
            await send_body(send, 200, self.card_body)
        else:
            raise not_found(f"no such endpoint: {scope['path']}")

    async def _other(
        self, method: str, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if path == "/metrics":
            require(method, "GET", scope)
            await send_body(send, 200, self.metrics.render().encode(), TEXT_HEADERS)
        elif path in ("/v2/health/live", "/v2/health/ready"):
            require(method, "GET", scope)
            key = "live" if path.endswith("live") else "ready"
            await send_body(send, 200, dumps({key: True}))
        elif path == "/v2":
            require(method, "GET", scope)
            body = {"name": SERVER_NAME, "version": package_version(), "extensions": EXTENSIONS}
            await send_body(send, 200, dumps(body))
        elif path == "/v1/models":
            require(method, "GET", scope)
            await send_body(send, 200, dumps({"models": [self.name]}))
        elif path == "/openapi.json":
            require(method, "GET", scope)
            await send_body(send, 200, self.openapi_body)
        elif path == "/admin/faults":
            faults = self.faults
            if faults is None:
                raise not_found(
                    "fault injection is off on this server; /admin/faults exists only when "
                    "it is started with --enable-fault-injection"
                )
            if method == "POST":
                faults.update(parse_json(await read_body(scope, receive, 64 * 1024)))
            else:
                require(method, "GET", scope)
            await send_body(send, 200, dumps(faults.as_json()))
        else:
            raise not_found(f"no such endpoint: {path}")

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.name:
            raise not_found(f"unknown model {name!r}; this server serves {self.name!r}")
        if version is not None and version != self.version:
            raise not_found(
                f"unknown version {version!r} of model {name!r}; this server serves "
                f"version {self.version!r}"
            )

    # ---- inference ------------------------------------------------------------------

    async def _infer(
        self,
        protocol: str,
        method: str,
        name: str,
        version: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        started = time.perf_counter()
        self.metrics.in_flight += 1
        batcher = self.batcher
        if batcher is not None:
            batcher.arriving += 1
        queued = False
        status = 200
        held = [0]
        try:
            require(method, "POST", scope)
            self._check_model(name, version)
            body, header_length = await read_body_and_header(
                scope,
                receive,
                self.options.max_body_bytes,
                self.budget,
                held,
                (self.options.max_rows, len(self.schema.names)),
                self._precheck if protocol == "v2" else None,
            )
            max_rows = self.options.max_rows
            if protocol == "v2":
                json_part, binary = split_binary(body, header_length)
                tensors, wanted, request_id = parse_request(
                    parse_json(json_part), binary, self.schema, max_rows
                )
                rows = rows_from_tensors(tensors, self.schema)
            else:
                rows = rows_from_v1(parse_json(body), self.schema, max_rows)
            if self.options.strict_schema:
                self.schema.check_schema(rows, "inputs" if protocol == "v2" else "instances")
            if batcher is not None:
                batcher.arriving -= 1
                queued = True
            faults = self.faults
            if faults is not None and faults.active:
                await inject_faults(faults)
            if batcher is not None:
                prediction = await batcher.submit(rows)
            elif rows.count >= OFF_LOOP_ROWS:
                # a large call runs on a thread (onnxruntime releases the GIL): health
                # probes and small requests keep being answered meanwhile
                call = await asyncio.to_thread(timed_call, self.engine.predict, rows)
                self.record(call)
                prediction = call.prediction
            else:
                prediction = self.score(rows)
            if protocol == "v2":
                await self._send_v2(send, prediction, wanted, request_id)
            else:
                await self._send_v1(send, prediction)
        except RequestError as exc:
            status = exc.status
            headers = CLOSE_JSON_HEADERS if exc.close else JSON_HEADERS
            await send_body(send, status, error_body(exc.message), headers)
        except ClientGone:
            status = 499
        except Exception:
            status = 500  # answered by _http's catch-all: count it as what the client gets
            raise
        finally:
            if held[0]:
                self.budget.release(held[0])
            if batcher is not None and not queued:
                batcher.arriving -= 1
            self.metrics.in_flight -= 1
            self.metrics.count_request(protocol, status, time.perf_counter() - started)

    def _precheck(self, header: bytes) -> None:
        try:
            doc = orjson.loads(header)
        except orjson.JSONDecodeError:
            return  # said precisely once the body is in
        precheck_header(doc, self.schema, self.options.max_rows)

    def score(self, rows: Rows) -> Prediction:
        """One onnxruntime call on the loop thread, timed and counted into the drift bins."""
        call = timed_call(self.engine.predict, rows)
        self.record(call)
        return call.prediction

    def record(self, call: Call) -> None:
        """Metrics and drift counts of one onnxruntime call (on the loop thread)."""
        self.metrics.inference_duration.observe(call.seconds)
        if self.batching:
            self.metrics.batch_size.observe(call.rows.count)
        self.drift.observe(call.rows, call.prediction)

    async def _send_v1(self, send: Send, prediction: Prediction) -> None:
        body: dict[str, Any] = {"predictions": json_labels(prediction.labels)}
        if prediction.probabilities is not None:
            body["probabilities"] = prediction.probabilities
        await send_body(send, 200, dumps(body))

    async def _send_v2(
        self, send: Send, prediction: Prediction, wanted: Any, request_id: Any
    ) -> None:
        outputs, chunks = v2_outputs(prediction, self.engine.label_datatype, wanted)
        body: dict[str, Any] = {"model_name": self.name, "model_version": self.version}
        if isinstance(request_id, str):
            body["id"] = request_id
        body["outputs"] = outputs
        header = dumps(body)
        if not chunks:
            await send_body(send, 200, header)
            return
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(len(header)).encode()),
        ]
        await send_body(send, 200, header + b"".join(chunks), headers)

    # ---- metadata -------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        card = self.model.card
        if card.onnx.input_layout == "matrix":
            inputs = [
                {
                    "name": self.model.inputs[0].name,
                    "datatype": "FP32",
                    "shape": [-1, len(card.features)],
                }
            ]
        else:
            inputs = [
                {
                    "name": t.name,
                    "datatype": "BYTES" if t.datatype == "BYTES" else "FP32",
                    "shape": [-1, 1],
                }
                for t in self.model.inputs
            ]
        outputs: list[dict[str, Any]] = [
            {"name": "label", "datatype": self.engine.label_datatype, "shape": [-1]}
        ]
        if self.engine.probabilities_output:
            outputs.append(
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": [-1, len(card.classes or [])],
                }
            )
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {
                "task": card.task,
                "algorithm": card.algorithm,
                "features": [f.model_dump(exclude_none=True) for f in card.features],
                "classes": card.classes,
                "target": card.target,
                "inputLayout": card.onnx.input_layout,
            },
        }


async def inject_faults(faults: Faults) -> None:
    await faults.delay()
    if faults.should_fail():
        raise RequestError(500, "injected fault (fault injection is on for this server)")


# ---- HTTP helpers -------------------------------------------------------------------


def require(method: str, allowed: str, scope: Scope) -> None:
    if method != allowed:
        raise RequestError(405, f"method {method} not allowed on {scope['path']}; use {allowed}")


def parse_json(body: bytes) -> Any:
    if not body:
        raise bad_request("malformed JSON: the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    body, _ = await read_body_and_header(scope, receive, limit)
    return body


async def read_body_and_header(
    scope: Scope,
    receive: Receive,
    limit: int,
    budget: BodyBudget | None = None,
    held: list[int] | None = None,
    rows_bound: tuple[int, int] | None = None,
    precheck: Callable[[bytes], None] | None = None,
) -> tuple[bytes, str | None]:
    """The whole request body (at most ``limit`` bytes) and the V2 binary header, if any.

    With a ``budget``, the declared Content-Length is reserved before anything is read
    (503 when it does not fit) and a chunked body as it arrives; ``held[0]`` grows by
    what was reserved, for the caller to release. With ``rows_bound`` (most rows, number
    of features) a JSON body is measured as it arrives and refused (413) as soon as it
    holds more rows than that, before it is parsed. With ``precheck``, the JSON header
    of a binary V2 body is checked as soon as it is in, before the binary data.
    A refusal made before the end of the body closes the connection."""

    def too_large(size: int | None) -> RequestError:
        if size is not None:
            return RequestError(
                413, f"body too large: {size} bytes; this server accepts at most {limit}", True
            )
        return RequestError(
            413, f"body too large: over {limit} bytes, the most this server accepts", True
        )

    header_length: str | None = None
    declared: int | None = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            if value.isdigit():
                declared = int(value)
                if declared > limit:
                    raise too_large(declared)
        elif key == b"inference-header-content-length":
            header_length = value.decode("latin-1")
    header_at: int | None = None
    if precheck is not None and header_length is not None and header_length.isdigit():
        header_at = int(header_length)
    shape = JsonShape() if rows_bound is not None and header_length is None else None

    def measure(chunk: bytes) -> None:
        if shape is not None and rows_bound is not None:
            shape.feed(chunk)
            if shape.too_many_rows(*rows_bound):
                raise RequestError(
                    413,
                    f"too many rows: this server scores at most {rows_bound[0]} rows per "
                    "request (--max-rows); split the request",
                    close=True,
                )

    def check_header(chunks: list[bytes], size: int) -> None:
        nonlocal header_at
        if header_at is not None and precheck is not None and size >= header_at:
            try:
                precheck(b"".join(chunks)[:header_at])
            except RequestError as exc:
                exc.close = True
                raise
            header_at = None

    def busy() -> RequestError:
        assert budget is not None
        return RequestError(503, budget.busy_message(), close=True)

    body = await receive_body(
        receive,
        limit=limit,
        declared=declared,
        too_large=too_large,
        busy=busy,
        budget=budget,
        held=held,
        on_chunk=measure,
        before_next=check_header,
    )
    return body, header_length
