"""The operator's activations daemon against a real HTTP router admin stand-in: it pokes
the deployment when requests are held, never spins (a router answering at once, a
router that is down), and ends when stopped."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pilotage.operator.handlers import ACTIVATION_BACKOFF_SECONDS, Scheduler
from pilotage.operator.settings import OperatorSettings
from tests.support.procs import free_port


class Stopped:
    """kopf's daemon flag as the daemon uses it: falsy until set, awaitable `wait()`."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


class Platform:
    def __init__(self, urls: list[str]):
        self.urls = urls
        self.asked = 0

    def router_admin(self, namespace: str, deployment: str) -> tuple[list[str], str]:
        self.asked += 1
        return self.urls, "token"


class Reconciler:
    def __init__(self, platform: Platform):
        self.platform = platform


class Admin(http.server.BaseHTTPRequestHandler):
    """Answers `GET /admin/activations` at once with the server's `held`."""

    def do_GET(self) -> None:
        server: Any = self.server
        server.polls += 1
        body = json.dumps({"held": server.held}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[Any]:
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Admin)
    server.polls, server.held = 0, {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def scheduler(urls: list[str]) -> tuple[Scheduler, Platform, list[str]]:
    platform = Platform(urls)
    settings = OperatorSettings(standalone=True, liveness_port=None, http_timeout_seconds=2)
    s = Scheduler(Reconciler(platform), settings)  # type: ignore[arg-type]
    poked: list[str] = []
    s.poke = lambda plural, namespace, name: poked.append(name)  # type: ignore[method-assign]
    return s, platform, poked


async def run_for(s: Scheduler, seconds: float) -> None:
    """Run the daemon for ``seconds``, then stop it; it must end within a second."""
    stopped = Stopped()
    task = asyncio.create_task(s.watch_activations("ml", "iris", stopped))
    await asyncio.sleep(seconds)
    stopped.event.set()
    await asyncio.wait_for(task, 1.0)


async def test_held_requests_poke_the_deployment_without_spinning(admin: Any) -> None:
    admin.held = {"stable": 1}
    s, _, poked = scheduler([f"http://127.0.0.1:{admin.server_address[1]}"])
    await run_for(s, 2.0)
    # one wake per pause (0.5 s) while requests stay held, not one per answer
    pause = ACTIVATION_BACKOFF_SECONDS[0]
    assert 1 <= len(poked) <= 2.0 / pause + 1, poked
    assert admin.polls == len(poked)


async def test_a_router_answering_at_once_is_not_polled_in_a_loop(admin: Any) -> None:
    s, _, poked = scheduler([f"http://127.0.0.1:{admin.server_address[1]}"])
    await run_for(s, 2.0)
    assert poked == []
    assert 1 <= admin.polls <= 2.0 / ACTIVATION_BACKOFF_SECONDS[0] + 1, admin.polls


async def test_a_router_that_is_down_is_asked_again_less_and_less_often() -> None:
    s, platform, poked = scheduler([f"http://127.0.0.1:{free_port()}"])  # nothing listens
    await run_for(s, 3.0)
    # pauses of 0.5, 1, 2 s: four attempts at most in 3 s
    assert poked == []
    assert 2 <= platform.asked <= 4, platform.asked


async def test_no_router_pod_yet_is_waited_for() -> None:
    s, platform, _ = scheduler([])
    await run_for(s, 1.0)
    assert 1 <= platform.asked <= 2, platform.asked
