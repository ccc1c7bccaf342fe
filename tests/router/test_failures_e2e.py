"""Failures around the router: a killed canary, a slow or dead shadow; and live feedback."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.router.conftest import force, table
from tests.router.traffic import Client, Traffic
from tests.support.procs import wait_until

pytestmark = pytest.mark.xdist_group("router-e2e")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_killed_canary_is_invisible_to_clients_and_visible_in_metrics(
    start_upstream, start_router
) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    router = start_router(table(stable=(stable, 50), canary=(canary, 50)))
    with Traffic(router.url, threads=4) as traffic:
        wait_until(lambda: traffic.count("canary") >= 100, 30, what="canary traffic")
        os.kill(canary.proc.pid, signal.SIGKILL)
        canary.proc.popen.wait(10)
        after_kill = traffic.count("stable")
        wait_until(
            lambda: traffic.count("stable") >= after_kill + 400, 30, what="traffic after kill"
        )
    assert traffic.failures == []
    stats = router.stats()["variants"]
    assert stats["canary"]["errors"] > 0
    assert stats["canary"]["retriedOnStable"] == stats["canary"]["errors"]
    assert stats["canary"]["codes"].get("502", 0) > 0
    metrics = Client(router.url).request("GET", "/metrics").body.decode()
    assert (
        'pilotage_router_requests_total{deployment="iris",variant="canary",version="2",code="502"}'
        in metrics
    )
    # a request forced onto the dead canary is not hidden: the tester sees the failure
    forced = Client(router.url).predict([[1.0, 2.0, 3.0, 4.0]], force("canary"))
    assert forced.status == 502 and forced.variant == "canary"
    assert "cannot connect" in json.loads(forced.body)["error"]


def test_failing_canary_answers_are_retried_on_stable(start_upstream, start_router) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    canary.control(fail=503)
    router = start_router(table(stable=(stable, 80), canary=(canary, 20)))
    client = Client(router.url)
    answers = [client.predict([[1.0, 2.0, 3.0, 4.0]]) for _ in range(50)]
    assert {(a.status, a.variant) for a in answers} == {(200, "stable")}
    assert router.stats()["variants"]["canary"]["codes"] == {"503": 10}


def shadow_table(stable, shadow, percent: float = 100) -> dict:
    doc = table(mode="shadow", stable=(stable, 100), shadow=(shadow, 0))
    doc["shadow"] = {"variant": "shadow", "percent": percent}
    return doc


def test_shadow_answers_are_compared_never_returned(start_upstream, start_router) -> None:
    stable = start_upstream("1")
    shadow = start_upstream(
        "2", "--disagree-every", "2"
    )  # differs on rows with an even first value
    router = start_router(shadow_table(stable, shadow))
    client = Client(router.url)
    for i in range(200):
        answer = client.predict([[float(i % 10), 1.0, 2.0, 3.0]])
        assert (answer.status, answer.variant) == (200, "stable")
    wait_until(
        lambda: sum(router.stats()["shadow"]["comparisons"].values()) == 200,
        20,
        what="200 comparisons",
    )
    shadow_stats = router.stats()["shadow"]
    assert shadow_stats["comparisons"] == {"agree": 100, "disagree": 100, "error": 0}
    assert shadow_stats["dropped"] == 0 and shadow_stats["agreement"] == 0.5
    metrics = client.request("GET", "/metrics").body.decode()
    assert 'pilotage_shadow_comparisons_total{deployment="iris",result="disagree"} 100' in metrics
    # V2 answers are compared too, and percent copies exactly that share
    router.put(shadow_table(stable, shadow, percent=25))
    for i in range(100):
        body = {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [float(i % 10), 1, 2, 3]}
            ]
        }
        assert client.request("POST", "/v2/models/iris/infer", body).status == 200
    wait_until(lambda: router.stats()["shadow"]["mirrored"] == 225, 20, what="25 more copies")
    wait_until(
        lambda: sum(router.stats()["shadow"]["comparisons"].values()) == 225, 20, what="compared"
    )
    assert router.stats()["shadow"]["comparisons"]["error"] == 0


def test_slow_then_dead_shadow_costs_the_primary_nothing(start_upstream, start_router) -> None:
    stable, shadow = start_upstream("1"), start_upstream("2")
    shadow.control(delay=3.0)
    router = start_router(
        shadow_table(stable, shadow), "--shadow-queue", "64", "--shadow-workers", "4"
    )
    with Traffic(router.url, threads=4) as traffic:
        wait_until(lambda: traffic.count() >= 1000, 60, what="warm-up traffic")
        rss_before = rss_kib(router.proc.pid)
        seen = traffic.count()
        wait_until(lambda: traffic.count() >= seen + 4000, 120, what="traffic with a slow shadow")
        rss_after = rss_kib(router.proc.pid)
        stats = router.stats()["shadow"]
        assert stats["queued"] <= 64
        assert stats["dropped"] > 3000  # the queue bounded the copies instead of growing
        os.kill(shadow.proc.pid, signal.SIGKILL)
        shadow.proc.popen.wait(10)
        seen = traffic.count()
        wait_until(lambda: traffic.count() >= seen + 1000, 60, what="traffic with a dead shadow")
    assert traffic.failures == []
    assert {a.variant for a in traffic.all()} == {"stable"}
    # a 3 s shadow never shows in a primary answer: none waited anywhere near it
    assert max(a.seconds for a in traffic.all()) < 1.5
    assert rss_after - rss_before < 10 * 1024, (rss_before, rss_after)
    final = router.stats()["shadow"]
    assert final["comparisons"]["error"] > 0  # the kill cut in-flight copies / refused new ones


def test_feedback_scores_what_each_variant_answered(start_upstream, start_router) -> None:
    stable, canary = start_upstream("1"), start_upstream("2", "--disagree-every", "1")
    router = start_router(table(stable=(stable, 50), canary=(canary, 50)))
    client = Client(router.url)
    truth: list[dict] = []
    for i in range(40):
        row = [float(i % 3), 0.0, 0.0, 0.0]
        answer = client.predict([row], {"x-pilotage-request-id": f"req-{i}"})
        assert answer.request_id == f"req-{i}"
        # ground truth is the stable model's rule: stable is always right, canary always wrong
        truth.append({"requestId": f"req-{i}", "label": int(row[0]) % 3})
    truth.append({"requestId": "never-seen", "label": 1})
    result = json.loads(client.request("POST", "/v1/feedback", {"feedback": truth}).body)
    assert result["recorded"] == 40 and result["unknown"] == 1
    stats = router.stats()
    assert stats["variants"]["stable"]["feedback"]["accuracy"] == 1.0
    assert stats["variants"]["canary"]["feedback"]["accuracy"] == 0.0
    assert stats["variants"]["stable"]["feedback"]["labelled"] == 20
    assert stats["feedback"] == {
        "received": 41,
        "unknown": 1,
        "mismatched": 0,
        "remembered": 0,
        "rememberedBytes": 0,
        "capacity": 10_000,
    }
    again = json.loads(client.request("POST", "/v1/feedback", {"feedback": truth[:1]}).body)
    assert again["unknown"] == 1  # an answer is scored once
    bad = client.request(
        "POST", "/v1/feedback", {"feedback": [{"requestId": "x", "label": 1, "value": 2}]}
    )
    assert bad.status == 400 and "feedback[0]" in json.loads(bad.body)["error"]
    assert client.request("POST", "/v1/feedback", {"nope": 1}).status == 400


def test_regression_feedback_mae_and_bounded_memory(start_upstream, start_router) -> None:
    stable = start_upstream("1", "--task", "regression")
    router = start_router(table(stable=(stable, 100)), "--recent-answers", "50")
    client = Client(router.url)
    ids = [client.predict([[1.0, 1.0, 0.0, 0.0]]).request_id for _ in range(80)]  # predicts 3.0
    feedback = [{"requestId": rid, "value": 3.5} for rid in ids]
    result = json.loads(client.request("POST", "/v1/feedback", {"feedback": feedback}).body)
    assert result["recorded"] == 50 and result["unknown"] == 30  # only the newest 50 kept
    fb = router.stats()["variants"]["stable"]["feedback"]
    assert fb["valued"] == 50 and fb["mae"] == pytest.approx(0.5)


def test_upstream_timeouts_answer_504_or_fall_back_to_stable(start_upstream, start_router) -> None:
    stable, canary = start_upstream("1"), start_upstream("2")
    canary.control(delay=1.0)
    doc = {**table(stable=(stable, 50), canary=(canary, 50)), "timeoutSeconds": 0.3}
    router = start_router(doc)
    client = Client(router.url)
    answers = [client.predict([[1.0, 2.0, 3.0, 4.0]]) for _ in range(4)]
    assert {(a.status, a.variant) for a in answers} == {(200, "stable")}
    assert router.stats()["variants"]["canary"]["codes"] == {"504": 2}
    forced = client.predict([[1.0, 2.0, 3.0, 4.0]], force("canary"))
    assert forced.status == 504 and "no answer within 0.3s" in json.loads(forced.body)["error"]
    # a timed-out connection is not reused: the next answer from the canary is a fresh one
    canary.control(delay=0)
    again = client.predict([[1.0, 2.0, 3.0, 4.0]], force("canary"))
    assert (again.status, again.variant, again.version) == (200, "canary", "2")
