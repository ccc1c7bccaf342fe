"""The dashboard app in process (no browser): its actions are the CLI's, its POST guard,
clear 4xx answers, escaping, and the bounded history its charts read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.api import parse_resource
from pilotage.control.analysis import quantile_ms
from pilotage.control.types import RouterStats, VariantStats
from pilotage.dashboard.app import DashboardApp, Sampler
from pilotage.dashboard.history import History
from pilotage.dashboard.source import LocalSource
from pilotage.local.store import Store

MD = {
    "apiVersion": "pilotage.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {"model": {"trainingJobRef": {"name": "iris-v1"}}},
}
ACTION_HEADERS = {"Content-Type": "application/json", "X-Pilotage-Action": "1"}
BOUNDS = (0.005, 0.01, 0.05, 0.1, 0.5)


def _app(tmp_path: Path, read_only: bool = False) -> tuple[DashboardApp, Store, History]:
    store = Store(tmp_path / "state")
    store.apply(parse_resource(MD))
    history = History()
    return (
        DashboardApp(LocalSource(tmp_path / "state"), history, read_only=read_only),
        store,
        history,
    )


def _client(app: DashboardApp, host: str = "127.0.0.1:8470") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def test_an_action_sets_the_annotation_the_cli_sets(tmp_path: Path) -> None:
    app, store, _ = _app(tmp_path)
    async with _client(app) as client:
        tokens = []
        for _ in range(2):
            r = await client.post(
                "/api/actions",
                json={"action": "promote", "namespace": "default", "name": "iris", "full": True},
                headers=ACTION_HEADERS,
            )
            assert r.status_code == 200, r.text
            token = store.get("ModelDeployment", "iris").metadata.annotations[
                "pilotage.dev/promote"
            ]
            assert (
                token.startswith("full:") and f"pilotage.dev/promote={token}" in r.json()["message"]
            )
            # the CLI's warning too: nothing is in rollout
            assert "no rollout in progress" in r.json()["warning"]
            tokens.append(token)
        assert tokens[0] != tokens[1]  # two clicks are two requests, as two commands are


@pytest.mark.parametrize(
    ("body", "headers", "host", "status", "says"),
    [
        (
            {"action": "abort", "namespace": "default", "name": "iris"},
            {},
            "127.0.0.1",
            400,
            "X-Pilotage-Action",
        ),
        (
            {"action": "abort", "namespace": "default", "name": "iris"},
            ACTION_HEADERS,
            "evil.example:80",
            403,
            "local address",
        ),
        (
            {"action": "explode", "namespace": "default", "name": "iris"},
            ACTION_HEADERS,
            "127.0.0.1",
            400,
            "unknown action 'explode'",
        ),
        (
            {"action": "abort", "namespace": "default", "name": "nope"},
            ACTION_HEADERS,
            "127.0.0.1",
            404,
            "not found",
        ),
        ({"action": "abort", "name": "iris"}, ACTION_HEADERS, "localhost", 400, "namespace"),
        ([1, 2], ACTION_HEADERS, "127.0.0.1", 400, "JSON object"),
    ],
)
async def test_refused_actions_are_clear_and_change_nothing(
    tmp_path: Path, body: Any, headers: dict[str, str], host: str, status: int, says: str
) -> None:
    app, store, _ = _app(tmp_path)
    async with _client(app, host) as client:
        r = await client.post("/api/actions", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    assert store.get("ModelDeployment", "iris").metadata.annotations == {}


async def test_read_only_hides_the_buttons_and_refuses_actions(tmp_path: Path) -> None:
    app, store, _ = _app(tmp_path, read_only=True)
    async with _client(app) as client:
        page = await client.get("/r/ModelDeployment/default/iris")
        assert page.status_code == 200 and "read-only" in page.text
        assert "data-action=" not in page.text
        r = await client.post(
            "/api/actions",
            json={"action": "promote", "namespace": "default", "name": "iris"},
            headers=ACTION_HEADERS,
        )
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert store.get("ModelDeployment", "iris").metadata.annotations == {}


async def test_pages_escape_what_they_show_and_answer_4xx_for_unknown_things(
    tmp_path: Path,
) -> None:
    app, store, _ = _app(tmp_path)
    store.write_status(
        "ModelDeployment", "iris", {"phase": "Degraded", "message": "<script>x</script>"}
    )
    async with _client(app) as client:
        page = await client.get("/r/ModelDeployment/default/iris")
        assert "&lt;script&gt;x&lt;/script&gt;" in page.text and "<script>x" not in page.text
        for path, status, says in [
            ("/r/Pod/default/x", 404, "unknown kind"),
            ("/r/ModelDeployment/default/nope", 404, "not found in namespace"),
            ("/api/r/ModelDeployment/default", 404, "KIND/NAMESPACE/NAME"),
            ("/nowhere", 404, "no page"),
        ]:
            r = await client.get(path)
            assert r.status_code == status and says in r.text, (path, r.text)
        assert (await client.delete("/")).status_code == 405
        js = await client.get("/static/dashboard.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        # no asset from elsewhere: every src/href is local
        assert "http://" not in page.text.split("</header>")[1].replace("http://127.0.0.1", "")


async def test_the_sampler_feeds_weights_over_time(tmp_path: Path) -> None:
    app, store, history = _app(tmp_path)
    sampler = Sampler(app.source, history)
    for weights in ({"stable": 100}, {"stable": 70, "canary": 30}):
        store.write_status("ModelDeployment", "iris", {"phase": "Progressing", "traffic": weights})
        sampler.sample()
        history._series(history._status, ("ModelDeployment", "default", "iris")).points[-1][
            "t"
        ] -= 5
    async with _client(app) as client:
        doc = (await client.get("/api/r/ModelDeployment/default/iris")).json()
    assert [p["traffic"] for p in doc["series"]["status"]] == [
        {"stable": 100},
        {"stable": 70, "canary": 30},
    ]


async def test_each_analysis_is_one_point_of_the_analysis_chart(tmp_path: Path) -> None:
    app, store, history = _app(tmp_path)
    sampler = Sampler(app.source, history)
    analyses = [("2026-01-01T00:00:00Z", 40.0), ("2026-01-01T00:00:02Z", 480.0)]
    for t, (when, p99) in enumerate(analyses * 2):  # each analysis sampled twice
        analysis = {"time": when, "p99Ms": p99, "verdict": "Pass", "requests": 9}
        store.write_status("ModelDeployment", "iris", {"lastAnalysis": analysis})
        sampler.sample(now=float(t * 2))
    async with _client(app) as client:
        page = (await client.get("/fragment/r/ModelDeployment/default/iris")).text
    chart = page.split('id="chart-analysis-p99"')[1].split("</svg>")[0]
    (line,) = [p for p in chart.split("<polyline")[1:]]
    assert len(line.split('points="')[1].split('"')[0].split()) == 2


def _stats(requests: int, errors: int, counts: tuple[int, ...]) -> RouterStats:
    return RouterStats(variants=(VariantStats("canary", "v2", requests, errors, BOUNDS, counts),))


def test_history_rates_and_quantiles_come_from_counter_differences() -> None:
    history = History(max_points=3)
    key = ("ModelDeployment", "default", "iris")
    history.record_router("default", "iris", _stats(100, 0, (100, 0, 0, 0, 0, 0)), 0.0)
    history.record_router("default", "iris", _stats(300, 10, (100, 100, 0, 0, 100, 0)), 2.0)
    point = history.router_points(key)[-1]["variants"]["canary"]
    assert point["rps"] == pytest.approx(100.0)
    assert point["errorRate"] == pytest.approx(0.05)
    assert point["p99Ms"] == pytest.approx(quantile_ms(BOUNDS, [0, 100, 0, 0, 100, 0], 0.99))
    # a counter that went down (the router restarted) is no interval
    history.record_router("default", "iris", _stats(5, 0, (5, 0, 0, 0, 0, 0)), 4.0)
    assert history.router_points(key)[-1]["variants"] == {}
    # readings closer than the spacing are skipped, and the ring keeps its bound
    history.record_router("default", "iris", _stats(6, 0, (6, 0, 0, 0, 0, 0)), 4.1)
    for i in range(10):
        history.record_router(
            "default", "iris", _stats(10 + i, 0, (10 + i, 0, 0, 0, 0, 0)), 6.0 + i
        )
    assert len(history.router_points(key)) == 3


async def test_trainingjob_page_shows_residuals_search_and_lineage(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    store.apply(
        parse_resource(
            {
                "apiVersion": "pilotage.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "reg-v1"},
                "spec": {
                    "datasetRef": {"name": "diabetes"},
                    "model": {"algorithm": "ridge"},
                    "search": {"type": "grid", "parameters": {"alpha": [0.1, 1.0]}},
                },
            }
        )
    )
    uri = (tmp_path / "model").as_uri()
    store.write_status(
        "TrainingJob",
        "reg-v1",
        {
            "phase": "Succeeded",
            "modelVersion": "reg-v1",
            "modelUri": uri,
            "search": {"bestParameters": {"alpha": 0.1}, "bestScore": -3.5, "trials": 2},
        },
    )
    cards = {
        uri: {
            "task": "regression",
            "metrics": {
                "residuals": {
                    "edges": [-2.0, -1.0, 0.0, 1.0, 2.0],
                    "counts": [1, 5, 6, 2],
                    "mean": 0.1,
                    "std": 0.9,
                }
            },
        }
    }
    app = DashboardApp(LocalSource(tmp_path / "state"), History(), card_reader=cards.get)
    async with _client(app) as client:
        page = (await client.get("/r/TrainingJob/default/reg-v1")).text
    assert 'id="chart-residuals"' in page and page.count("<title>rows ") == 4
    assert "{&#x27;alpha&#x27;: 0.1}" in page and "-3.5" in page
    assert '<a href="/r/Dataset/default/diabetes">diabetes</a> →' in page


async def test_the_charts_end_with_the_status_the_page_shows(tmp_path: Path) -> None:
    app, store, _ = _app(tmp_path)  # no sampler: only what the page itself read
    store.write_status("ModelDeployment", "iris", {"traffic": {"stable": 40, "canary": 60}})
    async with _client(app) as client:
        page = (await client.get("/fragment/r/ModelDeployment/default/iris")).text
    chart = page.split('id="chart-weights"')[1].split("</svg>")[0]
    assert "no data yet" not in chart and 'data-series="canary"' in chart


def test_model_cards_are_cached_and_a_missing_one_is_not_read_every_second(
    tmp_path: Path,
) -> None:
    reads: list[str] = []
    cards = {"file:///present": {"task": "classification"}}

    def reader(uri: str) -> dict[str, Any] | None:
        reads.append(uri)
        return cards.get(uri)

    app = DashboardApp(LocalSource(tmp_path / "state"), History(), card_reader=reader)
    for _ in range(5):
        assert app.card("file:///present") == {"task": "classification"}
        assert app.card("file:///missing") is None
    assert reads == ["file:///present", "file:///missing"]
