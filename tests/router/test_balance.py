"""Replica choice and the activator, in-process (the end-to-end tests use real processes)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pilotage.router.balance import Activator, Replica, ReplicaSet, Unavailable
from pilotage.router.upstream import UpstreamPool


def replicas(n: int) -> list[Replica]:
    return [
        Replica(f"http://127.0.0.1:{9000 + i}", UpstreamPool("127.0.0.1", 9000 + i))
        for i in range(n)
    ]


def test_least_in_flight_then_round_robin_among_equals() -> None:
    rs = replicas(3)
    chosen = ReplicaSet(rs)
    # all idle: round robin
    assert [chosen.pick() for _ in range(6)] == [rs[0], rs[1], rs[2], rs[0], rs[1], rs[2]]
    rs[0].in_flight, rs[1].in_flight, rs[2].in_flight = 5, 1, 3
    assert {chosen.pick() for _ in range(5)} == {rs[1]}


def test_a_failed_replica_is_out_at_once_and_back_after_its_time() -> None:
    rs = replicas(2)
    chosen = ReplicaSet(rs)
    now = time.monotonic()
    rs[0].failed(now)
    assert {chosen.pick() for _ in range(10)} == {rs[1]}
    assert rs[0].out_until == pytest.approx(now + 0.5)
    rs[0].failed(now)
    rs[0].failed(now)
    assert rs[0].out_until == pytest.approx(now + 2.0)  # longer while it keeps failing
    rs[0].out_until = time.monotonic() - 0.001  # its time passed: tried again
    assert rs[0] in {chosen.pick() for _ in range(4)}
    rs[0].succeeded()
    assert rs[0].failures == 0


def test_when_every_replica_is_out_the_one_back_soonest_is_tried() -> None:
    rs = replicas(3)
    now = time.monotonic()
    rs[0].failed(now)
    rs[1].failed(now)
    rs[1].failed(now)
    rs[2].failed(now)
    rs[2].out_until = now + 0.1
    assert ReplicaSet(rs).pick() is rs[2]


def test_pick_skips_replicas_already_tried_and_none_when_all_were() -> None:
    rs = replicas(2)
    chosen = ReplicaSet(rs)
    assert chosen.pick(exclude=[rs[0]]) is rs[1]
    assert chosen.pick(exclude=rs) is None
    assert ReplicaSet(rs[:1]).pick(exclude=rs[:1]) is None
    assert ReplicaSet([]).pick() is None


def test_held_requests_go_on_when_the_variant_gets_a_replica() -> None:
    async def scenario() -> None:
        activator = Activator(timeout=5, max_held=10)
        poll = asyncio.create_task(activator.wait_for_held(5))
        held = [asyncio.create_task(activator.hold("canary")) for _ in range(3)]
        woken = await asyncio.wait_for(poll, 1)  # the control plane learns at once
        assert woken == {"canary": 3}
        activator.released(["canary"])
        waited = await asyncio.gather(*held)
        assert all(w < 1 for w in waited)
        assert activator.activations == {"canary": 3}
        assert activator.waiting() == {}

    asyncio.run(scenario())


def test_a_held_request_gets_503_past_the_timeout_and_past_the_bound() -> None:
    async def scenario() -> None:
        activator = Activator(timeout=0.2, max_held=2)
        first = asyncio.create_task(activator.hold("stable"))
        second = asyncio.create_task(activator.hold("stable"))
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="maxHeldRequests"):
            await activator.hold("stable")
        for task in (first, second):
            with pytest.raises(Unavailable, match=r"none started within 0.2s"):
                await task
        assert activator.timeouts == {"stable": 2}
        assert activator.refused == {"stable": 1}
        assert activator.waiting() == {}

    asyncio.run(scenario())


def test_a_removed_variant_fails_its_held_requests() -> None:
    async def scenario() -> None:
        activator = Activator(timeout=5)
        task = asyncio.create_task(activator.hold("preview"))
        await asyncio.sleep(0)
        activator.abandon(["preview"])
        with pytest.raises(Unavailable, match="removed"):
            await task

    asyncio.run(scenario())


def test_the_long_poll_returns_empty_after_its_timeout() -> None:
    async def scenario() -> None:
        assert await Activator().wait_for_held(0.05) == {}

    asyncio.run(scenario())
