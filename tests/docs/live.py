"""The real processes the doc examples talk to: one `pilotage serve` of an iris model and
one `pilotage route` in front of it, configured by docs/routing.md's own routing file."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.docs.blocks import DOCS_DIR, extract
from tests.support.models import build_model
from tests.support.procs import Process, free_port, pilotage, running

TOKEN = "doc-test-admin-token"
# serving.md's fault-injection examples need it; its start-up example is the same command
# without it (compare_serve_output).
FAULTS_FLAG = "--enable-fault-injection"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 5.0, 2.0], [6.3, 2.8, 4.9, 1.5]]


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """One JSON request; returns the decoded answer (raises on 4xx/5xx)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@dataclass
class Live:
    model_uri: str
    server_url: str
    server: Process
    router_url: str
    admin_url: str
    drift_before: dict[str, Any] = field(default_factory=dict)
    drift_after: dict[str, Any] = field(default_factory=dict)

    @property
    def server_port(self) -> int:
        return int(self.server_url.rsplit(":", 1)[1])

    def substitutions(self) -> list[tuple[str, str]]:
        """Addresses and paths of the doc examples → those of these processes."""
        hostport = self.server_url.removeprefix("http://")
        return [
            ("file:///models/iris/v1", self.model_uri),
            ("localhost:8080", hostport),
            ("127.0.0.1:8080", hostport),
            ("--port 8080", f"--port {self.server_port}"),
            ("http://127.0.0.1:PORT", self.router_url),
        ]

    def substitute(self, text: str) -> str:
        for documented, real in self.substitutions():
            text = text.replace(documented, real)
        return text


def routing_document(server_url: str) -> dict[str, Any]:
    """docs/routing.md's first routing file, its upstreams pointed at the live server."""
    block = next(b for b in extract(DOCS_DIR / "routing.md") if b.lang == "yaml")
    doc = yaml.safe_load(block.text)
    for variant in doc["variants"]:
        variant["url"] = server_url
    return dict(doc)


def send_traffic(live: Live, requests: int) -> None:
    """V1 requests through the router, then feedback for every answer (so that each
    variant has a live accuracy)."""
    feedback = []
    for i in range(requests):
        request_id = f"doc-{i}"
        http(
            "POST",
            f"{live.router_url}/v1/models/iris:predict",
            {"instances": [ROWS[i % len(ROWS)]]},
            {"x-pilotage-request-id": request_id},
        )
        feedback.append({"requestId": request_id, "label": i % 3})
    http("POST", f"{live.router_url}/v1/feedback", {"feedback": feedback})


@contextmanager
def live_processes(workdir: Path) -> Iterator[Live]:
    model_dir = build_model(workdir / "models" / "iris" / "v1", "iris", version="v1")
    model_uri = model_dir.as_uri()
    server_port, router_port, admin_port = free_port(), free_port(), free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    routes = workdir / "routes.yaml"
    routes.write_text(yaml.safe_dump(routing_document(server_url)))
    token_file = workdir / "admin-token"
    token_file.write_text(TOKEN)
    with ExitStack() as stack:
        server = stack.enter_context(
            running(
                pilotage(
                    "serve", "--model-uri", model_uri, "--port", str(server_port), FAULTS_FLAG
                ),
                workdir / "server.log",
                ready_url=f"{server_url}/v2/health/ready",
            )
        )
        router_args = ["--config", str(routes), "--port", str(router_port)]
        router_args += ["--admin-port", str(admin_port), "--admin-token-file", str(token_file)]
        stack.enter_context(
            running(
                pilotage("route", *router_args),
                workdir / "router.log",
                ready_url=f"http://127.0.0.1:{router_port}/pilotage/healthz",
            )
        )
        live = Live(
            model_uri,
            server_url,
            server,
            f"http://127.0.0.1:{router_port}",
            f"http://127.0.0.1:{admin_port}",
        )
        live.drift_before = http("GET", f"{server_url}/v1/models/iris/drift")
        send_traffic(live, 120)
        live.drift_after = http("GET", f"{server_url}/v1/models/iris/drift")
        yield live
    shutil.rmtree(model_dir, ignore_errors=True)
