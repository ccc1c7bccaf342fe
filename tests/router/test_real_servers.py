"""The router in front of real `pilotage serve` processes serving real iris models.

stable = logistic regression (v1), candidate = a depth-2 decision tree (v2): they
disagree on some flowers, which the shadow comparison and live accuracy must see
exactly as direct calls to the two servers do.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sklearn.datasets import load_iris

from tests.router.conftest import Upstream, force, table
from tests.router.test_routing_e2e import send_many
from tests.router.traffic import Client, Traffic
from tests.support.models import build_model
from tests.support.procs import free_port, pilotage, running, wait_until

pytestmark = pytest.mark.xdist_group("router-real")

IRIS = load_iris()
ROWS: list[list[float]] = IRIS.data.tolist()
LABELS: list[int] = IRIS.target.tolist()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("router-models")
    return {
        "v1": build_model(root / "v1", "iris", "logistic_regression", "v1"),
        "v2": build_model(root / "v2", "iris", "decision_tree", "v2", max_depth=2),
    }


@pytest.fixture(scope="module")
def serve(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Upstream]]:
    logs = tmp_path_factory.mktemp("router-serve-logs")
    with ExitStack() as stack:

        def start(version: str) -> Upstream:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            args = pilotage("serve", "--model-uri", models[version].as_uri(), "--port", str(port))
            proc = stack.enter_context(
                running(args, logs / f"serve-{port}.log", ready_url=f"{url}/v2/health/ready")
            )
            return Upstream(url, version, proc)

        yield start


@pytest.fixture(scope="module")
def servers(serve: Callable[[str], Upstream]) -> dict[str, Upstream]:
    return {"v1": serve("v1"), "v2": serve("v2")}


def direct_predictions(upstream: Upstream) -> list[int]:
    answer = Client(upstream.url).predict(ROWS)
    assert answer.status == 200
    return json.loads(answer.body)["predictions"]


def test_split_over_10000_requests_to_real_servers(servers, start_router) -> None:
    router = start_router(table(stable=(servers["v1"], 90), canary=(servers["v2"], 10)))
    answers = send_many(router.url, 10_000)
    assert Counter(status for status, _ in answers) == {200: 10_000}
    share = sum(variant == "canary" for _, variant in answers) / len(answers)
    assert abs(share - 0.10) <= 0.01
    client = Client(router.url)
    forced = client.predict(ROWS[:1], force("canary"))
    assert (forced.variant, forced.version) == ("canary", "v2")


def test_shadow_comparison_matches_direct_calls(servers, start_router) -> None:
    v1, v2 = direct_predictions(servers["v1"]), direct_predictions(servers["v2"])
    expected_disagree = sum(a != b for a, b in zip(v1, v2, strict=True))
    assert 0 < expected_disagree < len(ROWS)  # the two models really differ, a little
    doc = table(mode="shadow", stable=(servers["v1"], 100), shadow=(servers["v2"], 0))
    doc["shadow"] = {"variant": "shadow", "percent": 100}
    router = start_router(doc)
    client = Client(router.url)
    for row, expected in zip(ROWS, v1, strict=True):
        answer = client.predict([row])
        assert answer.variant == "stable" and json.loads(answer.body)["predictions"] == [expected]
    wait_until(
        lambda: sum(router.stats()["shadow"]["comparisons"].values()) == len(ROWS),
        30,
        what="compared",
    )
    comparisons = router.stats()["shadow"]["comparisons"]
    assert comparisons == {
        "agree": len(ROWS) - expected_disagree,
        "disagree": expected_disagree,
        "error": 0,
    }


def test_live_accuracy_matches_offline_accuracy(servers, start_router) -> None:
    router = start_router(table(stable=(servers["v1"], 50), canary=(servers["v2"], 50)))
    client = Client(router.url)
    by_variant: dict[str, list[bool]] = {"stable": [], "canary": []}
    feedback = []
    for i, (row, label) in enumerate(zip(ROWS, LABELS, strict=True)):
        answer = client.predict([row], {"x-pilotage-request-id": f"flower-{i}"})
        by_variant[answer.variant].append(json.loads(answer.body)["predictions"][0] == label)
        feedback.append({"requestId": f"flower-{i}", "label": label})
    result = json.loads(client.request("POST", "/v1/feedback", {"feedback": feedback}).body)
    assert result["recorded"] == len(ROWS)
    stats = router.stats()["variants"]
    for variant, hits in by_variant.items():
        assert stats[variant]["feedback"]["labelled"] == len(hits)
        assert stats[variant]["feedback"]["accuracy"] == pytest.approx(sum(hits) / len(hits))


def test_killed_real_canary_is_retried_on_stable(servers, serve, start_router) -> None:
    canary = serve("v2")
    router = start_router(table(stable=(servers["v1"], 70), canary=(canary, 30)))
    with Traffic(router.url, threads=4, rows=lambda i: [ROWS[i % len(ROWS)]]) as traffic:
        wait_until(lambda: traffic.count("canary") >= 100, 30, what="canary traffic")
        os.kill(canary.proc.pid, signal.SIGKILL)
        canary.proc.popen.wait(10)
        seen = traffic.count("stable")
        wait_until(lambda: traffic.count("stable") >= seen + 300, 30, what="traffic after kill")
    assert traffic.failures == []
    stats = router.stats()["variants"]["canary"]
    assert stats["errors"] > 0 and stats["retriedOnStable"] == stats["errors"]
