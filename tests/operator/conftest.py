"""Fixtures: the emulated API server on a real port, and a kopf operator run in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock
import kopf
import pytest

from tests.operator.emulator import Cluster


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as emulator, kmock.Server(emulator, host="127.0.0.1"):
        yield emulator


def api_url(cluster: Cluster) -> str:
    return str(cluster.servers[0].url).rstrip("/")


# A deadline, not a timing: generous, because a loaded machine (two cores shared with a
# second `make test`) slows every step; a passing wait returns as soon as it holds.
DEADLINE = 60.0


async def eventually(check: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> Any:
    """Await until ``check()`` returns something truthy (without blocking the loop)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or check}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_kopf(
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings | None = None,
    **kwargs: Any,
) -> AsyncIterator[None]:
    """Run kopf.operator() as a task of this loop until the block ends."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    settings = settings or kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.1
    kwargs.setdefault("standalone", True)
    kwargs.setdefault("clusterwide", True)
    task = asyncio.create_task(
        kopf.operator(
            registry=registry, settings=settings, stop_flag=stop, ready_flag=ready, **kwargs
        )
    )
    waiter: Awaitable[Any] = asyncio.wait(
        [task, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    await asyncio.wait_for(waiter, DEADLINE)
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)
