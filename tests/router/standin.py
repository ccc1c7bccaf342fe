"""A stand-in model server for router tests: a real process answering V1/V2 like pilotage serve.

    python -m tests.router.standin --port P [--host H] --version 2 [--task regression]
        [--disagree-every N]

Classifier: the label of a row is ``int(row[0]) % 3``; with ``--disagree-every N`` a
row whose ``int(row[0]) % N == 0`` gets the next label instead (a "different model").
Regression: ``1.5 * sum(row)`` plus ``--offset``. ``POST /control`` with
``{"delay": seconds, "fail": status}`` changes behaviour at run time; ``GET /control``
returns how many inference requests arrived and over how many distinct connections
(``connections``: client addresses that sent inference requests; each connection
counts once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import uvicorn


class StandIn:
    def __init__(self, args: argparse.Namespace):
        self.version: str = args.version
        self.task: str = args.task
        self.disagree_every: int = args.disagree_every
        self.offset: float = args.offset
        self.delay = 0.0
        self.fail = 0
        self.requests = 0
        self.clients: set[tuple[str, int]] = set()

    def predict_row(self, row: list[float]) -> Any:
        if self.task == "regression":
            return 1.5 * sum(row) + self.offset
        label = int(row[0]) % 3
        if self.disagree_every and int(row[0]) % self.disagree_every == 0:
            label = (label + 1) % 3
        return label

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        client = scope.get("client")
        if client is not None and scope["path"].endswith((":predict", "/infer")):
            self.clients.add((client[0], client[1]))
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, doc = await self.handle(scope["method"], scope["path"], body)
        raw = json.dumps(doc).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            (b"x-standin-version", self.version.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/control":
            if method == "POST":
                change = json.loads(body or b"{}")
                self.delay = float(change.get("delay", self.delay))
                self.fail = int(change.get("fail", self.fail))
            return 200, {
                "requests": self.requests,
                "connections": len(self.clients),
                "version": self.version,
            }
        if path in ("/v2/health/ready", "/v2/health/live"):
            return 200, {}
        if method == "GET" and path.startswith(("/v1/models/", "/v2/models/")):
            return 200, {"name": path.split("/")[3], "versions": [self.version]}
        if method != "POST" or not (path.endswith(":predict") or path.endswith("/infer")):
            return 404, {"error": f"no route {method} {path}"}
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            return self.fail, {"error": "injected failure"}
        try:
            doc = json.loads(body)
        except ValueError:
            return 400, {"error": "body: malformed JSON"}
        if path.endswith(":predict"):
            rows = doc.get("instances")
            if not isinstance(rows, list):
                return 400, {"error": "instances: required list"}
            return 200, {"predictions": [self.predict_row(r) for r in rows]}
        tensor = doc["inputs"][0]
        width = tensor["shape"][1]
        data = tensor["data"]
        rows = [data[i : i + width] for i in range(0, len(data), width)]
        preds = [self.predict_row(r) for r in rows]
        datatype = "FP64" if self.task == "regression" else "INT64"
        return 200, {
            "model_name": path.split("/")[3],
            "model_version": self.version,
            "outputs": [
                {"name": "label", "datatype": datatype, "shape": [len(preds)], "data": preds}
            ],
        }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--version", default="1")
    p.add_argument("--task", default="classification", choices=["classification", "regression"])
    p.add_argument("--disagree-every", type=int, default=0)
    p.add_argument("--offset", type=float, default=0.0)
    args = p.parse_args()
    uvicorn.run(
        StandIn(args),
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
