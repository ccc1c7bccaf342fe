"""The dashboard in headless chromium against a real `pilotage up` (real training, servers,
router and traffic), playing one story: the quickstart's resources → a canary whose
weights on the page follow the router's → the page's promote button advances the paused
canary → an injected latency breach rolls it back and the page shows the measured p99
against the SLO → shifted traffic makes a DriftMonitor flag the shifted features.

Screenshots of each page go to $PILOTAGE_SCREENSHOTS (default: a temporary directory);
they are never committed. The tests run in file order on one `pilotage up`.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pilotage.local.processes import start_ticks
from pilotage.local.store import Store
from tests.dashboard.browser import browser_page, screenshot_dir
from tests.support.procs import Process, free_port, pilotage, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard-browser")]

ROOT = Path(__file__).resolve().parents[2]
API = "pilotage.dev/v1alpha1"
P99_SLO_MS = 150
SHIFTED = ("sepal_length_cm", "petal_length_cm")

CANARY = [
    {
        "apiVersion": API,
        "kind": "TrainingJob",
        "metadata": {"name": "iris-v2"},
        "spec": {
            "datasetRef": {"name": "iris"},
            "model": {"algorithm": "decision_tree", "hyperparameters": {"max_depth": 3}},
        },
    },
    {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"trainingJobRef": {"name": "iris-v2"}},
            "strategy": {
                "type": "Canary",
                "canary": {
                    "steps": [
                        {"setWeight": 30},
                        {"pause": {}},  # until promoted: the page's button does it
                        {"setWeight": 60},
                        {"pause": {"duration": "10m"}},
                    ]
                },
            },
            "analysis": {
                "interval": "2s",
                "failureLimit": 0,
                "minRequests": 5,
                "latency": {"p99Ms": P99_SLO_MS},
            },
        },
    },
]

MONITOR = {
    "apiVersion": API,
    "kind": "DriftMonitor",
    "metadata": {"name": "iris-drift"},
    "spec": {
        "deploymentRef": {"name": "iris"},
        "method": "psi",
        "window": {"requests": 300},
        "interval": "500ms",
        "minSamples": 100,
        "onDrift": {
            "rollback": False,
            "retrain": {
                "template": {
                    "spec": {
                        "datasetRef": {"name": "iris"},
                        "model": {"algorithm": "logistic_regression"},
                    }
                }
            },
        },
    },
}


def _iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return [[float(v) for v in row] for row in load_iris().data]


class Traffic:
    """Two clients sending iris rows (``shift`` moves some features) to the router."""

    def __init__(self, endpoint: str, rows: list[list[float]]) -> None:
        self.url = f"{endpoint}/v1/models/iris:predict"
        self.rows = rows
        self.shift: Callable[[list[float]], list[float]] = lambda r: r
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(2)
        ]
        for t in self.threads:
            t.start()

    def _loop(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            row = self.shift(list(rng.choice(self.rows)))
            body = json.dumps({"instances": [row]}).encode()
            req = urllib.request.Request(self.url, body, {"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    resp.read()
            except OSError as exc:
                self.errors.append(str(exc))
            self.stop.wait(0.02)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


@dataclass
class Story:
    up: Process
    store: Store
    state: Path
    tmp: Path
    url: str
    page: Any
    shots: Path
    traffic: Traffic | None = None

    def status(self, kind: str, name: str) -> dict[str, Any]:
        res = self.store.find(kind, name)
        return dict(res.dump().get("status") or {}) if res else {}

    def apply(self, name: str, docs: list[dict[str, Any]]) -> None:
        path = self.tmp / name
        path.write_text("\n---\n".join(json.dumps(d) for d in docs))
        subprocess.run(
            pilotage("apply", "-f", str(path), "--state-dir", str(self.state)),
            check=True,
            capture_output=True,
        )

    def router_weights(self) -> dict[str, int]:
        """The weights the router itself is using (its admin stats, with its admin token)."""
        (router,) = [r for r in self.store.processes() if r.key == "router/iris"]
        token = (self.state / "tokens" / "router-iris.admin").read_text().strip()
        req = urllib.request.Request(
            f"http://127.0.0.1:{router.info['admin_port']}/admin/stats",
            headers={"authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return dict(json.loads(resp.read())["weights"])

    def page_weights(self) -> dict[str, int]:
        cells = self.page.locator(".weight[data-variant]")
        return {
            cells.nth(i).get_attribute("data-variant"): int(cells.nth(i).inner_text())
            for i in range(cells.count())
        }

    def open(self, path: str) -> None:
        self.page.goto(self.url.rstrip("/") + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("dashboard")
    state = tmp / "state"
    args = ["up", "--state-dir", str(state), "--interval", "0.1", "--plain"]
    args += ["--dashboard-port", str(free_port()), "-f", str(ROOT / "examples/quickstart.yaml")]
    up = Process(pilotage(*args), tmp / "up.log")
    found: list[str] = []

    def announced() -> bool:
        if not up.alive():
            raise RuntimeError(f"pilotage up exited:\n{up.log()[-3000:]}")
        found[:] = re.findall(r"^dashboard: (http://127\.0\.0\.1:\d+/)$", up.log(), re.M)
        return bool(found)

    try:
        wait_until(announced, 30, 0.1, "the dashboard line of `pilotage up`")
        # it is among the first lines: after the applied resources, before the live view
        assert up.log().splitlines().index(f"dashboard: {found[0]}") <= 4, up.log()
        with browser_page(tmp) as page:
            s = Story(up, Store(state), state, tmp, found[0], page, screenshot_dir())
            try:
                yield s
            finally:
                if s.traffic is not None:
                    s.traffic.close()
    finally:
        up.stop(30)
        for rec in Store(state).processes():
            if start_ticks(rec.pid) == rec.start_ticks:
                os.killpg(rec.pid, signal.SIGKILL)


def test_list_shows_the_quickstart_resources(story: Story) -> None:
    story.open("/")
    for kind, name in (
        ("Dataset", "iris"),
        ("TrainingJob", "iris-v1"),
        ("ModelDeployment", "iris"),
    ):
        row = story.page.locator(f'tr[data-kind="{kind}"][data-name="{name}"]')
        row.wait_for()
    # the page refreshes itself: the deployment turns Healthy without a reload
    story.page.locator(
        'tr[data-kind="ModelDeployment"][data-name="iris"] [data-phase="Healthy"]'
    ).wait_for(timeout=120_000)
    assert (
        "True"
        in story.page.locator('tr[data-kind="TrainingJob"][data-name="iris-v1"]').inner_text()
    )
    story.shot("01-resources")
    story.open("/r/TrainingJob/default/iris-v1")
    story.page.locator("table.confusion").wait_for()
    lineage = story.page.locator(".lineage").inner_text()
    assert "iris → iris-v1 → iris-v1 → iris" in lineage, lineage
    story.shot("02-trainingjob")


def test_canary_weights_follow_the_router_and_promote_advances_the_pause(story: Story) -> None:
    endpoint = story.status("ModelDeployment", "iris")["endpoint"]
    story.traffic = Traffic(endpoint, _iris_rows())
    story.apply("canary.yaml", CANARY)
    story.open("/r/ModelDeployment/default/iris")

    def canary_at(weight: int) -> bool:
        return (
            story.router_weights().get("canary") == weight
            and story.page_weights().get("canary") == weight
        )

    wait_until(lambda: canary_at(30), 120, 0.2, "canary 30 in the router and on the page")
    assert story.page_weights() == story.router_weights()
    # paused at the step that waits for a person
    story.page.locator('.step.current[data-step="1"]').wait_for()
    story.page.locator('tr[data-variant="canary"]').wait_for(timeout=30_000)  # per-variant rates
    story.shot("03-canary-paused")

    story.page.once("dialog", lambda dialog: dialog.accept())
    story.page.locator('button.action[data-action="promote"][data-full="false"]').click()
    story.page.locator("#flash.flash-ok").wait_for()
    assert "annotated pilotage.dev/promote=" in story.page.locator("#flash").inner_text()
    wait_until(lambda: canary_at(60), 30, 0.2, "canary 60 after the promote button")
    assert story.page_weights() == story.router_weights() == {"stable": 40, "canary": 60}
    story.shot("04-canary-promoted")


def test_rollback_shows_the_measured_p99_and_the_slo(story: Story) -> None:
    servers = [r for r in story.store.processes() if r.key.startswith("server/iris/iris-v2/")]
    assert servers
    for rec in servers:
        req = urllib.request.Request(
            f"http://127.0.0.1:{rec.port}/admin/faults",
            json.dumps({"latencyMs": 400}).encode(),
            {"content-type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).read()
    story.page.locator("tr.history-rolledback").wait_for(timeout=60_000)
    row = story.page.locator('tr[data-slo="p99 latency"]')
    measured = float(row.locator(".measured").inner_text().removesuffix("ms"))
    status = story.status("ModelDeployment", "iris")
    assert measured == pytest.approx(status["lastAnalysis"]["p99Ms"], rel=0.01)
    assert measured > P99_SLO_MS
    assert f"{P99_SLO_MS}ms" in row.locator(".limit").inner_text()
    assert "FAIL" in row.inner_text()
    history = story.page.locator("tr.history-rolledback").first.inner_text()
    assert "iris-v2" in history and "p99" in history, history
    wait_until(lambda: story.page_weights() == {"stable": 100}, 10, 0.2, "stable 100 on the page")
    assert story.router_weights() == {"stable": 100}
    story.shot("05-rollback")


def test_drift_page_shows_the_shifted_features_above_threshold(story: Story) -> None:
    assert story.traffic is not None
    story.traffic.shift = lambda r: [r[0] + 3.0, r[1], r[2] + 4.0, r[3]]
    story.apply("monitor.yaml", [MONITOR])
    story.open("/r/DriftMonitor/default/iris-drift")
    for feature in SHIFTED:
        story.page.locator(f'tr.drifted[data-feature="{feature}"]').wait_for(timeout=90_000)
    on_page = story.page.locator("tr.drifted[data-feature]")
    marked = {on_page.nth(i).get_attribute("data-feature") for i in range(on_page.count())}
    assert set(SHIFTED) <= marked
    for feature in SHIFTED:
        row = story.page.locator(f'tr[data-feature="{feature}"]')
        score = float(row.locator(".score").inner_text())
        threshold = float(row.locator(".threshold").inner_text())
        assert score > threshold == 0.2
        assert "above threshold" in row.inner_text()
    # the histogram of the most drifted feature: baseline and live bars
    story.page.locator("#chart-histogram rect[fill]").first.wait_for()
    assert story.page.locator("#chart-histogram").inner_html().count("<title>live") > 0
    # the trigger and the retrain it created, which trains
    retrain = story.page.locator("table.retrains tbody tr").first
    retrain.wait_for(timeout=30_000)
    name = story.status("DriftMonitor", "iris-drift")["lastRetrain"]["name"]
    assert name in retrain.inner_text() and "drift" in retrain.inner_text()
    story.shot("06-drift")


def test_pages_load_nothing_from_the_network(story: Story) -> None:
    """Every request a page makes goes to the dashboard itself: no CDN, no font, no API."""
    seen: list[str] = []
    story.page.on("request", lambda request: seen.append(request.url))
    for path in ("/", "/r/ModelDeployment/default/iris", "/r/DriftMonitor/default/iris-drift"):
        story.open(path)
        story.page.wait_for_load_state("networkidle")
    assert seen
    elsewhere = [u for u in seen if not u.startswith(story.url) and not u.startswith("data:")]
    assert elsewhere == []
