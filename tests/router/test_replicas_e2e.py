"""Several replicas per variant and variants at zero, through a real router process to real
stand-in upstream processes: balancing, a killed replica, requests held at zero."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.router.conftest import TOKEN, Router, Upstream
from tests.router.traffic import Answer, Client, Traffic, get_json
from tests.support.procs import wait_until

ROW = [[1.0, 2.0, 3.0, 4.0]]


def doc(mode: str = "canary", **variants: tuple[list[Upstream], int, str]) -> dict[str, Any]:
    """name -> (replicas, weight, version)."""
    return {
        "deployment": "iris",
        "mode": mode,
        "variants": [
            {"name": n, "urls": [u.url for u in ups], "weight": w, "version": v}
            for n, (ups, w, v) in variants.items()
        ],
    }


def stats(router: Router) -> Any:
    return get_json(router.admin_url, "/admin/stats", TOKEN)


def served(up: Upstream) -> int:
    return int(up.control()["requests"])


def in_thread(fn: Callable[[], Answer]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # the test asserts on it
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_requests_are_balanced_over_replicas_by_fewest_in_flight(
    start_upstream: Callable[..., Upstream], start_router: Callable[..., Router]
) -> None:
    ups = [start_upstream("1") for _ in range(3)]
    router = start_router(doc(stable=(ups, 100, "1")))
    client = Client(router.url)
    for _ in range(30):
        assert client.predict(ROW).status == 200
    client.close()
    assert [served(u) for u in ups] == [10, 10, 10]  # one at a time: round robin

    ups[0].control(delay=0.2)  # a slow replica holds its requests longer
    with Traffic(router.url, threads=6) as traffic:
        wait_until(lambda: traffic.count() >= 300, timeout=60, what="300 answers")
    assert not traffic.failures
    slow, fast = served(ups[0]) - 10, min(served(u) for u in ups[1:]) - 10
    # fewest in flight: the slow replica gets far fewer than its third
    assert slow * 5 < fast, (slow, fast)
    entry = stats(router)["variants"]["stable"]
    assert entry["replicas"] == 3
    assert entry["inFlight"] == 0 and entry["busySeconds"] > 0


def test_a_killed_replica_is_taken_out_at_once_with_no_client_error(
    start_upstream: Callable[..., Upstream], start_router: Callable[..., Router]
) -> None:
    ups = [start_upstream("1") for _ in range(2)]
    router = start_router(doc(stable=(ups, 100, "1")))
    with Traffic(router.url, threads=4) as traffic:
        wait_until(lambda: traffic.count() >= 100, timeout=60, what="100 answers")
        ups[0].proc.popen.kill()
        ups[0].proc.popen.wait()
        before = traffic.count()
        wait_until(lambda: traffic.count() >= before + 300, timeout=60, what="300 more")
    assert traffic.failures == []
    entry = stats(router)["variants"]["stable"]
    assert entry["replicasOut"] == 1
    # after the kill every answer came from the live replica: it served all of them
    assert served(ups[1]) >= traffic.count() - before


def test_an_address_that_never_answers_the_handshake_is_taken_out_after_the_connect_timeout(
    start_upstream: Callable[..., Upstream], start_router: Callable[..., Router]
) -> None:
    """A pod gone with its network: connecting to its address neither succeeds nor is
    refused. The router gives up after --connect-timeout (not the request timeout),
    takes the replica out and sends the request to another replica: no client error."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    # one connection fills the accept queue (never accepted): later handshakes are dropped
    filler = socket.create_connection(blackhole.getsockname())
    try:
        up = start_upstream("1")
        dead = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        router = start_router(
            {
                "deployment": "iris",
                "mode": "canary",
                "variants": [
                    {"name": "stable", "urls": [dead, up.url], "weight": 100, "version": "1"}
                ],
            },
            "--connect-timeout",
            "0.3",
        )
        client = Client(router.url, timeout=60)
        answers = [client.predict(ROW) for _ in range(10)]
        client.close()
        assert [a.status for a in answers] == [200] * 10, [a.body for a in answers]
        assert served(up) == 10
        assert stats(router)["variants"]["stable"]["replicasOut"] == 1
    finally:
        filler.close()
        blackhole.close()


def test_a_request_at_zero_is_held_the_control_plane_woken_and_answered(
    start_upstream: Callable[..., Upstream], start_router: Callable[..., Router]
) -> None:
    up = start_upstream("1")
    router = start_router(doc(stable=([], 100, "1")))
    poll, polled = in_thread(
        lambda: Client(router.admin_url).request(
            "GET", "/admin/activations?wait=30", headers={"authorization": f"Bearer {TOKEN}"}
        )
    )
    held, answers = in_thread(lambda: Client(router.url).predict(ROW))
    poll.join(10)
    assert not poll.is_alive(), "the long poll did not return when a request was held"
    assert json.loads(polled[0].body) == {"held": {"stable": 1}}
    assert held.is_alive()  # still waiting: no replica yet
    assert stats(router)["variants"]["stable"]["held"] == 1
    started = time.perf_counter()
    router.put(doc(stable=([up], 100, "1")))
    held.join(10)
    assert isinstance(answers[0], Answer) and answers[0].status == 200, answers
    assert time.perf_counter() - started < 5
    entry = stats(router)["variants"]["stable"]
    assert entry["held"] == 0
    assert entry["activation"]["activations"] == 1
    assert entry["activation"]["lastColdStartSeconds"] > 0
    metrics = Client(router.url).request("GET", "/metrics").body.decode()
    assert 'pilotage_router_cold_starts_total{deployment="iris",variant="stable"} 1' in metrics
    assert 'pilotage_router_held_requests{deployment="iris",variant="stable"} 0' in metrics


def test_a_request_held_past_the_activation_timeout_gets_a_clear_503(
    start_router: Callable[..., Router],
) -> None:
    table = doc(stable=([], 100, "1"))
    table["activation"] = {"timeoutSeconds": 0.3, "maxHeld": 5}
    router = start_router(table)
    answer = Client(router.url).predict(ROW)
    assert answer.status == 503
    assert "no ready replica: none started within 0.3s" in json.loads(answer.body)["error"]
    assert answer.variant == "stable"
    assert stats(router)["variants"]["stable"]["activation"]["timeouts"] == 1


def test_a_shadow_at_zero_is_not_woken_by_mirrored_copies(
    start_upstream: Callable[..., Upstream], start_router: Callable[..., Router]
) -> None:
    up = start_upstream("1")
    table = doc("shadow", stable=([up], 100, "1"), shadow=([], 0, "2"))
    table["shadow"] = {"variant": "shadow", "percent": 100}
    router = start_router(table)
    client = Client(router.url)
    for _ in range(20):
        assert client.predict(ROW).status == 200
    s = stats(router)
    assert s["variants"]["shadow"]["held"] == 0
    assert s["variants"]["shadow"]["activation"]["activations"] == 0
    assert s["shadowTotals"]["mirrored"] == 0
    answer = Client(router.admin_url).request(
        "GET", "/admin/activations?wait=0", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert json.loads(answer.body) == {"held": {}}


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ({"name": "stable", "weight": 100, "version": "1"}, "exactly one of url"),
        (
            {"name": "stable", "url": "http://a:1", "urls": [], "weight": 100, "version": "1"},
            "exactly one of url",
        ),
        ({"name": "stable", "urls": "http://a:1", "weight": 100, "version": "1"}, "urls: must be"),
        (
            {"name": "stable", "urls": ["http://a:1", "http://a:1"], "weight": 100, "version": "1"},
            "listed twice",
        ),
        ({"name": "stable", "urls": ["ftp://a:1"], "weight": 100, "version": "1"}, r"urls\[0\]"),
    ],
)
def test_bad_replica_lists_are_refused_naming_the_field(
    variant: dict[str, Any], message: str
) -> None:
    from pilotage.wire.routes import RoutingError, parse_table

    with pytest.raises(RoutingError, match=message):
        parse_table({"deployment": "iris", "mode": "canary", "variants": [variant]})
