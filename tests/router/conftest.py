"""Fixtures for router tests: stand-in upstream processes and routers started from a document."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pilotage.router.table import write_table_file
from pilotage.wire.admin import get_stats, push_routes
from tests.support.procs import Process, free_port, pilotage, running

TOKEN = "s3cret-admin-token"
VARIANT_TOKEN = "s3cret-variant-token"


def force(variant: str) -> dict[str, str]:
    """The request headers that force ``variant`` on a router started by ``start_router``."""
    return {"x-pilotage-variant": variant, "x-pilotage-variant-token": VARIANT_TOKEN}


@dataclass
class Upstream:
    url: str
    version: str
    proc: Process

    def control(self, **change: Any) -> Any:
        """Change the stand-in's behaviour; returns its counters."""
        from tests.router.traffic import Client

        client = Client(self.url)
        answer = client.request("POST", "/control", change)
        client.close()
        return json.loads(answer.body)


@dataclass
class Router:
    url: str
    admin_url: str
    config: Path
    proc: Process

    def stats(self) -> Any:
        return get_stats(self.admin_url, TOKEN)

    def put(self, doc: dict[str, Any]) -> Any:
        return push_routes(self.admin_url, TOKEN, doc)


def table(
    deployment: str = "iris", mode: str = "canary", **variants: tuple[Upstream, int]
) -> dict[str, Any]:
    """A routing document; ``variants`` maps name -> (upstream, weight)."""
    return {
        "deployment": deployment,
        "mode": mode,
        "variants": [
            {"name": name, "url": up.url, "weight": weight, "version": up.version}
            for name, (up, weight) in variants.items()
        ],
    }


@pytest.fixture
def start_upstream(tmp_path: Path) -> Iterator[Callable[..., Upstream]]:
    with ExitStack() as stack:

        def start(version: str, *extra: str) -> Upstream:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            args = [
                sys.executable,
                "-m",
                "tests.router.standin",
                "--port",
                str(port),
                "--version",
                version,
                *extra,
            ]
            proc = stack.enter_context(
                running(
                    args,
                    tmp_path / f"standin-{port}.log",
                    ready_url=f"{url}/v2/health/ready",
                    timeout=30,
                )
            )
            return Upstream(url, version, proc)

        yield start


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[Callable[..., Router]]:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    variant_token_file = tmp_path / "variant-token"
    variant_token_file.write_text(VARIANT_TOKEN + "\n")
    with ExitStack() as stack:

        def start(doc: dict[str, Any], *extra: str) -> Router:
            port, admin = free_port(), free_port()
            config = tmp_path / f"routes-{port}.json"
            write_table_file(config, doc)
            args = pilotage(
                "route", "--config", str(config), "--port", str(port),
                "--admin-port", str(admin), "--admin-token-file", str(token_file),
                "--variant-token-file", str(variant_token_file), *extra,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            proc = stack.enter_context(
                running(
                    args,
                    tmp_path / f"router-{port}.log",
                    ready_url=f"{url}/pilotage/healthz",
                    timeout=30,
                )
            )
            return Router(url, f"http://127.0.0.1:{admin}", config, proc)

        yield start
