"""Real router process in front of real upstream processes: split, stickiness, live changes."""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from pilotage.router.table import write_table_file
from pilotage.wire.admin import RouterAdminError, get_routes, push_routes
from tests.router.conftest import TOKEN, force, table
from tests.router.traffic import Client, Traffic, get_json, put_routes
from tests.support.procs import wait_until

pytestmark = pytest.mark.xdist_group("router-e2e")


def send_many(
    url: str, n: int, threads: int = 4, headers: dict[str, str] | None = None
) -> list[tuple[int, str]]:
    def worker(count: int) -> list[tuple[int, str]]:
        client = Client(url)
        out = [
            (a.status, a.variant)
            for a in (client.predict([[1.0, 2.0, 3.0, 4.0]], headers) for _ in range(count))
        ]
        client.close()
        return out

    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(worker, [n // threads] * threads))
    return [x for part in parts for x in part]


def test_canary_split_is_exact_over_10000_requests(start_upstream, start_router) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    router = start_router(table(stable=(stable, 90), canary=(canary, 10)))
    answers = send_many(router.url, 10_000)
    assert Counter(status for status, _ in answers) == {200: 10_000}
    share = sum(variant == "canary" for _, variant in answers) / len(answers)
    assert abs(share - 0.10) <= 0.01
    stats = router.stats()
    assert (
        stats["variants"]["canary"]["requests"] + stats["variants"]["stable"]["requests"] == 10_000
    )
    assert stats["variants"]["canary"]["requests"] == sum(v == "canary" for _, v in answers)
    # what the upstreams saw agrees with the router's headers
    assert get_json(canary.url, "/control")["requests"] == stats["variants"]["canary"]["requests"]


def test_sticky_header_keeps_users_and_weight_change_moves_few(
    start_upstream, start_router
) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    doc = {**table(stable=(stable, 70), canary=(canary, 30)), "stickyHeader": "x-user"}
    router = start_router(doc)
    client = Client(router.url)
    users = [f"user-{i}" for i in range(400)]

    def placement() -> dict[str, str]:
        seen: dict[str, set[str]] = {u: set() for u in users}
        for _ in range(2):
            for u in users:
                answer = client.predict([[1.0, 2.0, 3.0, 4.0]], {"x-user": u})
                assert answer.status == 200
                seen[u].add(answer.variant)
        assert all(len(v) == 1 for v in seen.values()), "a user reached two variants"
        return {u: v.pop() for u, v in seen.items()}

    before = placement()
    assert 0.2 < sum(v == "canary" for v in before.values()) / len(users) < 0.4
    router.put(
        {
            **doc,
            "variants": [
                {**doc["variants"][0], "weight": 50},
                {**doc["variants"][1], "weight": 50},
            ],
        }
    )
    after = placement()
    moved = [u for u in users if before[u] != after[u]]
    assert all(before[u] == "stable" and after[u] == "canary" for u in moved)
    assert 0.1 < len(moved) / len(users) < 0.3  # ~20 % of users: the weight that changed hands
    # without the header, the exact split still applies
    assert {client.predict([[1.0, 2.0, 3.0, 4.0]]).variant for _ in range(4)} == {
        "stable",
        "canary",
    }


def test_weight_changes_under_traffic_fail_nothing(start_upstream, start_router) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    doc = table(stable=(stable, 100), canary=(canary, 0))
    router = start_router(doc, "--watch-interval", "0.1")
    generation = router.stats()["generation"]
    with Traffic(router.url, threads=4) as traffic:
        for step, weight in enumerate([10, 25, 50, 75, 100, 50, 0, 30]):
            new = table(stable=(stable, 100 - weight), canary=(canary, weight))
            if step % 2:  # alternate the two delivery paths: file and admin API
                write_table_file(router.config, new)
            else:
                router.put(new)
            wait_until(
                lambda g=generation + step + 1: router.stats()["generation"] >= g,
                10,
                what="table applied",
            )
            seen = traffic.count()
            wait_until(lambda s=seen: traffic.count() >= s + 100, 30, what="traffic after change")
    assert traffic.failures == []
    assert traffic.count("canary") > 0 and traffic.count("stable") > 0
    stats = router.stats()
    assert stats["weights"] == {"stable": 70, "canary": 30}
    assert stats["variants"]["stable"]["errors"] == stats["variants"]["canary"]["errors"] == 0


def test_bluegreen_preview_only_by_header_and_switches_are_atomic(
    start_upstream, start_router
) -> None:
    blue, green = start_upstream("1"), start_upstream("2")
    doc = table(mode="bluegreen", stable=(blue, 100), preview=(green, 0))
    router = start_router(doc)
    client = Client(router.url)
    assert {client.predict([[1.0, 2.0, 3.0, 4.0]]).variant for _ in range(20)} == {"stable"}
    forced = client.predict([[1.0, 2.0, 3.0, 4.0]], force("preview"))
    assert (forced.status, forced.variant, forced.version) == (200, "preview", "2")
    unknown = client.predict([[1.0, 2.0, 3.0, 4.0]], force("canary"))
    assert unknown.status == 400 and "no variant 'canary'" in json.loads(unknown.body)["error"]

    switched = table(mode="bluegreen", stable=(blue, 0), preview=(green, 100))
    with Traffic(router.url, threads=4) as traffic:
        wait_until(lambda: traffic.count() >= 200, 30, what="traffic on blue")
        router.put(switched)
        wait_until(lambda: traffic.count("preview") >= 200, 30, what="traffic on green")
        router.put(doc)  # switch back
        seen = traffic.count("stable")
        wait_until(lambda: traffic.count("stable") >= seen + 200, 30, what="traffic back on blue")
    assert traffic.failures == []
    for per_thread in traffic.answers:
        sequence = "".join("b" if a.variant == "stable" else "g" for a in per_thread)
        # each client sees blue, then green, then blue: never a mix within a phase
        assert re.fullmatch(r"b*g*b*", sequence), sequence
        assert all(a.version == ("1" if a.variant == "stable" else "2") for a in per_thread)


def test_admin_api_is_protected_and_validates(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    doc = table(stable=(stable, 100))
    router = start_router(doc)
    admin = Client(router.admin_url)
    assert admin.request("GET", "/admin/routes").status == 401
    assert admin.request("PUT", "/admin/routes", doc).status == 401
    assert (
        admin.request("GET", "/admin/stats", headers={"authorization": "Bearer wrong"}).status
        == 403
    )
    auth = {"authorization": f"Bearer {TOKEN}"}
    routes = json.loads(admin.request("GET", "/admin/routes", headers=auth).body)
    assert routes["variants"][0]["url"] == stable.url and routes["generation"] == 1

    with pytest.raises(RouterAdminError) as refused:
        push_routes(router.admin_url, "wrong", doc)
    assert refused.value.status == 403
    with pytest.raises(RouterAdminError, match="HTTP 400 mode: must be one of"):
        push_routes(router.admin_url, TOKEN, {**doc, "mode": "linear"})
    assert get_routes(router.admin_url, TOKEN)["generation"] == 1
    bad = put_routes(router.admin_url, TOKEN, {**doc, "mode": "linear"})
    assert bad.status == 400 and "mode: must be one of" in json.loads(bad.body)["error"]
    other = put_routes(router.admin_url, TOKEN, {**doc, "deployment": "wine"})
    assert other.status == 409
    assert admin.request("DELETE", "/admin/routes", headers=auth).status == 405
    assert admin.request("GET", "/admin/nothing", headers=auth).status == 404
    same = router.put({**doc})
    assert same == {"applied": False, "generation": 1, "revision": None}
    assert router.put({**doc, "revision": "r2"})["generation"] == 2
    assert router.put({**doc, "revision": "r3", "sequence": 5})["generation"] == 3
    older = put_routes(router.admin_url, TOKEN, {**doc, "revision": "r4", "sequence": 4})
    assert older.status == 409, older.body
    assert "sequence 4 is older than the active table's 5" in json.loads(older.body)["error"]
    with pytest.raises(RouterAdminError) as outdated:
        push_routes(router.admin_url, TOKEN, {**doc, "revision": "r4", "sequence": 4})
    assert outdated.value.refused
    stats = router.stats()
    assert (stats["revision"], stats["sequence"], stats["outdatedTables"]) == ("r3", 5, 2)

    public = Client(router.url)
    # the admin API is not reachable through the public port, nor proxied to servers
    assert public.request("PUT", "/admin/routes", doc).status == 404
    assert public.request("POST", "/admin/faults", {"errorRate": 1}).status == 404
    # nor the stats: upstream URLs and reload errors stay on the admin port
    stats = public.request("GET", "/pilotage/stats")
    assert stats.status == 404 and "admin port" in json.loads(stats.body)["error"]
    assert router.stats()["revision"] == "r3"


def test_file_changes_apply_and_bad_files_are_ignored(start_upstream, start_router) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    router = start_router(
        table(stable=(stable, 100), canary=(canary, 0)), "--watch-interval", "0.1"
    )
    write_table_file(router.config, table(stable=(stable, 0), canary=(canary, 100)))
    wait_until(lambda: router.stats()["generation"] == 2, 5, what="file change applied")
    assert Client(router.url).predict([[1.0, 2.0, 3.0, 4.0]]).variant == "canary"
    # Replaced whole, as write_table_file does (it refuses this document): a watcher that read
    # a half-written file would report a JSON error instead of the one asserted below.
    staged = router.config.with_name(".bad-table.json")
    staged.write_text('{"deployment": "iris", "mode": "canary", "variants": []}')
    staged.replace(router.config)
    wait_until(lambda: router.stats()["reloadErrors"] == 1, 5, what="bad file reported")
    stats = router.stats()
    assert (
        stats["generation"] == 2 and "variants: required non-empty list" in stats["lastReloadError"]
    )
    assert Client(router.url).predict([[1.0, 2.0, 3.0, 4.0]]).variant == "canary"


def test_metrics_and_request_ids(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    router = start_router(table(stable=(stable, 100)))
    client = Client(router.url)
    first, second = client.predict([[1.0, 2.0, 3.0, 4.0]]), client.predict([[1.0, 2.0, 3.0, 4.0]])
    assert first.request_id and second.request_id and first.request_id != second.request_id
    mine = client.predict([[1.0, 2.0, 3.0, 4.0]], {"x-pilotage-request-id": "client-42"})
    assert mine.request_id == "client-42"
    bad = client.predict([[1.0, 2.0, 3.0, 4.0]], {"x-pilotage-request-id": "x" * 500})
    assert bad.status == 400
    head = client.request("HEAD", "/v2/health/ready")
    assert (head.status, head.variant, head.body) == (200, "stable", b"")
    text = client.request("GET", "/metrics").body.decode()
    assert (
        'pilotage_router_requests_total{deployment="iris",variant="stable",version="1",code="200"} 4'
        in text
    )
    assert 'pilotage_router_traffic_weight{deployment="iris",variant="stable"} 100' in text
    assert (
        'pilotage_router_request_duration_seconds_count{deployment="iris",variant="stable",version="1"} 4'
        in text
    )
    assert 'pilotage_shadow_comparisons_total{deployment="iris",result="agree"} 0' in text
