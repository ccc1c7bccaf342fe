"""The closed loop of issue #9 on the embedded runtime, with real processes and traffic.

One runtime (in this process, ticking every 0.1 s) serves two deployments of an iris
model trained from `builtin://iris`:

* `iris` is watched for data drift: traffic drawn from the training rows is Healthy; the
  same rows with the petal features shifted make the next window Drifting with exactly
  those two features named; one retrain is created, trains on the shifted snapshot, goes
  through the canary and is promoted; the old distribution then drifts against the new
  baseline, and the cooldown holds the next retrain back.
* `iris-side` is watched by three monitors that each fire one other trigger: live
  accuracy from `POST /v1/feedback` labels that degrade, the `pilotage.dev/retrain`
  annotation, and a Dataset whose file content changed.

Our own client sends every row, so each drift window holds exactly the rows a step sent:
the tests wait on the monitor's checks (status.lastCheckTime), never on the clock.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_iris

from pilotage.api import parse_resource
from pilotage.api.modelcard import CARD_FILE, ModelCard, NumericProfile
from pilotage.local import cli
from pilotage.local.processes import start_ticks
from pilotage.local.runtime import Runtime
from pilotage.local.store import Store
from pilotage.local.up import build_runtime
from tests.support.procs import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-drift-loop")]

API = "pilotage.dev/v1alpha1"
# The trainer's names for the builtin iris columns.
FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
SHIFT = {"petal_length_cm": 2.5, "petal_width_cm": 1.0}  # the sepal features stay put
WINDOW = 300  # rows per drift check
BATCH = 50  # rows per request
COOLDOWN = "10m"
SIDE_LABELS = {"app": "iris-side-retrain"}  # matched by no deployment: side retrains never roll out


# -- data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    features: dict[str, float]
    label: int


def iris_rows() -> list[Row]:
    data = load_iris()
    return [
        Row(dict(zip(FEATURES, map(float, x), strict=True)), int(y))
        for x, y in zip(data.data, data.target, strict=True)
    ]


def shifted(row: Row) -> Row:
    return Row({f: round(v + SHIFT.get(f, 0.0), 3) for f, v in row.features.items()}, row.label)


def write_csv(path: Path, rows: list[Row]) -> None:
    lines = [",".join([*FEATURES, "target"])]
    lines += [",".join([*(f"{r.features[f]:g}" for f in FEATURES), str(r.label)]) for r in rows]
    path.write_text("\n".join(lines) + "\n")


# -- manifests ----------------------------------------------------------------------


def dataset(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": uri}, "target": "target"},
    }


def job_spec(dataset_name: str) -> dict[str, Any]:
    return {
        "datasetRef": {"name": dataset_name},
        "model": {"algorithm": "logistic_regression", "hyperparameters": {"max_iter": 300}},
        "evaluation": {"gates": [{"metric": "accuracy", "min": 0.8}]},
    }


def deployment(name: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "strategy": {
                "type": "Canary",
                "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]},
            },
            "analysis": {
                "interval": "1s",
                "failureLimit": 2,
                "minRequests": 3,
                "errorRate": {"max": 0.05},
            },
        },
    }


def monitor(
    name: str,
    deployment_name: str,
    template: dict[str, Any] | None,
    cooldown: str = COOLDOWN,
    **spec: Any,
) -> dict[str, Any]:
    on_drift: dict[str, Any] = {"cooldown": cooldown}
    if template is not None:
        on_drift["retrain"] = {"template": template}
    return {
        "apiVersion": API,
        "kind": "DriftMonitor",
        "metadata": {"name": name},
        "spec": {
            "deploymentRef": {"name": deployment_name},
            "method": "psi",
            "window": {"requests": WINDOW},
            "interval": "300ms",
            "minSamples": 100,
            "onDrift": on_drift,
            **spec,
        },
    }


def side_template(dataset_name: str) -> dict[str, Any]:
    return {"metadata": {"labels": SIDE_LABELS}, "spec": job_spec(dataset_name)}


def manifests(fresh_csv: Path, daily_csv: Path) -> list[dict[str, Any]]:
    return [
        dataset("iris", "builtin://iris"),
        dataset("iris-fresh", fresh_csv.resolve().as_uri()),
        dataset("iris-daily", daily_csv.resolve().as_uri()),
        {
            "apiVersion": API,
            "kind": "TrainingJob",
            "metadata": {"name": "iris-v1", "labels": {"app": "iris"}},
            "spec": job_spec("iris"),
        },
        deployment("iris", {"trainingJobSelector": {"matchLabels": {"app": "iris"}}}),
        monitor(
            "iris",
            "iris",
            {"metadata": {"labels": {"app": "iris"}}, "spec": job_spec("iris-fresh")},
        ),
        deployment("iris-side", {"trainingJobRef": {"name": "iris-v1"}}),
        monitor(
            "iris-quality",
            "iris-side",
            side_template("iris"),
            window={"requests": 10_000_000},
            performance={"metric": "accuracy", "min": 0.8, "minSamples": 40},
        ),
        monitor(
            "iris-manual",
            "iris-side",
            side_template("iris"),
            cooldown="0s",
            window={"requests": 10_000_000},
        ),
        # no retrain: it only reports, with KS on the servers' recent rows
        monitor("iris-ks", "iris-side", None, method="ks"),
        monitor(
            "iris-daily",
            "iris-side",
            side_template("iris-daily"),
            window={"requests": 10_000_000},
            retrainOnDatasetChange=True,
        ),
    ]


# -- the client ---------------------------------------------------------------------


@dataclass
class Answer:
    request_id: str
    predictions: list[Any]
    variant: str
    version: str


@dataclass
class Client:
    """V1 predictions with rows keyed by feature name, and feedback, through a router."""

    endpoint: str
    deployment: str
    seen: dict[tuple[str, str], int] = field(default_factory=dict)

    def _post(self, path: str, body: Any) -> tuple[http.client.HTTPResponse, Any]:
        host, port = self.endpoint.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            resp = conn.getresponse()
            doc = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 200, (path, resp.status, doc)
        return resp, doc

    def predict(self, rows: list[Row]) -> Answer:
        resp, doc = self._post(
            f"/v1/models/{self.deployment}:predict", {"instances": [r.features for r in rows]}
        )
        answer = Answer(
            request_id=resp.getheader("x-pilotage-request-id") or "",
            predictions=list(doc["predictions"]),
            variant=resp.getheader("x-pilotage-variant") or "",
            version=resp.getheader("x-pilotage-model-version") or "",
        )
        key = (answer.variant, answer.version)
        self.seen[key] = self.seen.get(key, 0) + len(rows)
        return answer

    def send(self, rows: list[Row]) -> list[Answer]:
        return [self.predict(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]

    def feedback(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        _, doc = self._post("/v1/feedback", {"feedback": items})
        return dict(doc)


# -- the runtime --------------------------------------------------------------------


@dataclass
class Loop:
    store: Store
    runtime: Runtime
    tmp: Path
    rows: list[Row]
    rng: random.Random = field(default_factory=lambda: random.Random(9))

    def status(self, kind: str, name: str) -> dict[str, Any]:
        res = self.store.find(kind, name)
        return dict(res.dump().get("status") or {}) if res else {}

    def events(self, kind: str, name: str, reason: str) -> list[str]:
        return [e.message for _, e in self.store.events(kind=kind, name=name) if e.reason == reason]

    def owned_jobs(self, monitor_name: str) -> list[dict[str, Any]]:
        uid = self.store.get("DriftMonitor", monitor_name).metadata.uid
        return [
            tj.dump()
            for tj in self.store.objects("TrainingJob")
            if any(r.get("uid") == uid for r in tj.dump()["metadata"].get("ownerReferences", []))
        ]

    def sample(self, n: int) -> list[Row]:
        return [self.rng.choice(self.rows) for _ in range(n)]

    def serving(self, deployment_name: str, version: str) -> Client:
        def healthy() -> bool:
            st = self.status("ModelDeployment", deployment_name)
            stable = (st.get("stable") or {}).get("version")
            return st.get("phase") == "Healthy" and stable == version

        wait_until(healthy, 120, 0.1, f"{deployment_name} Healthy on {version}")
        return Client(self.status("ModelDeployment", deployment_name)["endpoint"], deployment_name)

    def checked(self, monitor_name: str, after: str | None, timeout: float = 30) -> dict[str, Any]:
        """The monitor's status after its next check (lastCheckTime past ``after``)."""
        found: dict[str, Any] = {}

        def done() -> bool:
            st = self.status("DriftMonitor", monitor_name)
            if st.get("lastCheckTime") and st.get("lastCheckTime") != after:
                found.update(st)
                return True
            return False

        wait_until(done, timeout, 0.05, f"a drift check of {monitor_name}")
        # the reconcile writes the status, then records its events: once the tick that
        # wrote the status has ended, its events are in the store too
        tick = self.runtime.ticks
        wait_until(lambda: self.runtime.ticks > tick, timeout, 0.01, "the end of that tick")
        return found

    def retrained(self, monitor_name: str, timeout: float = 30) -> None:
        """Wait for the monitor's RetrainCreated event: written after the TrainingJob was
        created and the status recorded it (the last step of that reconcile)."""
        wait_until(
            lambda: bool(self.events("DriftMonitor", monitor_name, "RetrainCreated")),
            timeout,
            0.05,
            f"a retrain by {monitor_name}",
        )

    def watching(self, monitor_name: str, version: str) -> None:
        """Wait until the monitor took its counter checkpoint on ``version``."""

        def ready() -> bool:
            cp = self.status("DriftMonitor", monitor_name).get("checkpoint") or {}
            return cp.get("version") == version and "counts" in cp

        wait_until(ready, 30, 0.05, f"{monitor_name} watching {version}")


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    tmp = tmp_path_factory.mktemp("drift-loop")
    rows = iris_rows()
    write_csv(tmp / "fresh.csv", [shifted(r) for r in rows])
    write_csv(tmp / "daily.csv", rows)
    store, runtime = build_runtime(tmp / "state")
    for doc in manifests(tmp / "fresh.csv", tmp / "daily.csv"):
        store.apply(parse_resource(doc))
    thread = threading.Thread(target=runtime.run, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield Loop(store, runtime, tmp, rows)
    finally:
        runtime.stop_event.set()
        thread.join(30)
        runtime.platform.stop_everything()
        for rec in store.processes():  # whatever happened, leave no process behind
            if start_ticks(rec.pid) == rec.start_ticks:
                os.killpg(rec.pid, signal.SIGKILL)


def model_card(uri: str) -> ModelCard:
    return ModelCard.model_validate_json(Path(uri.removeprefix("file://"), CARD_FILE).read_text())


# -- the tests ----------------------------------------------------------------------


def test_drift_retrains_once_rolls_out_and_promotes(loop: Loop) -> None:
    client = loop.serving("iris", "iris-v1")
    loop.watching("iris", "iris-v1")

    # --- traffic drawn from the training rows: Healthy
    client.send(loop.sample(WINDOW))
    st = loop.checked("iris", None)
    assert st["phase"] == "Healthy", st["message"]
    assert st["samples"] == WINDOW and not st["datasetDrift"]
    assert not [f["name"] for f in st["features"] if f["drifted"]]
    assert loop.owned_jobs("iris") == []

    # --- the same rows with the petal features shifted: the very next check drifts
    client.send([shifted(r) for r in loop.sample(WINDOW)])
    st = loop.checked("iris", st["lastCheckTime"])
    assert st["phase"] == "Drifting", st["message"]
    assert st["samples"] == WINDOW and st["datasetDrift"] and st["driftScore"] == 0.5
    drifted = {f["name"] for f in st["features"] if f["drifted"]}
    assert drifted == set(SHIFT)
    assert [f["name"] for f in st["features"][:2]] == sorted(
        SHIFT, key=lambda n: -next(f["score"] for f in st["features"] if f["name"] == n)
    )
    detected = loop.events("DriftMonitor", "iris", "DriftDetected")
    assert len(detected) == 1
    assert all(name in detected[0] for name in SHIFT)
    assert not any(name in detected[0] for name in FEATURES if name not in SHIFT)

    # --- one retrain, owned by the monitor, labelled with its trigger
    loop.retrained("iris")
    [job] = loop.owned_jobs("iris")
    retrain = job["metadata"]["name"]
    assert job["metadata"]["labels"] == {
        "app": "iris",
        "pilotage.dev/monitor": "iris",
        "pilotage.dev/trigger": "drift",
    }
    last = loop.status("DriftMonitor", "iris")["lastRetrain"]
    assert last["name"] == retrain and last["trigger"] == "drift"
    assert all(name in last["message"] for name in SHIFT)
    [created] = loop.events("DriftMonitor", "iris", "RetrainCreated")
    assert f"TrainingJob {retrain} created by trigger drift" in created
    assert all(name in created for name in SHIFT)

    # --- it trains on the shifted snapshot
    def trained() -> bool:
        phase = loop.status("TrainingJob", retrain).get("phase")
        assert phase != "Failed", loop.status("TrainingJob", retrain)
        return phase == "Succeeded"

    wait_until(trained, 120, 0.1, f"{retrain} trained")
    tj = loop.status("TrainingJob", retrain)
    assert tj["datasetFingerprint"] == loop.status("Dataset", "iris-fresh")["fingerprint"]
    old_card = model_card(loop.status("TrainingJob", "iris-v1")["modelUri"])
    new_card = model_card(tj["modelUri"])
    for name, shift in SHIFT.items():
        old, new = old_card.baseline.features[name], new_card.baseline.features[name]
        assert isinstance(old, NumericProfile) and isinstance(new, NumericProfile)
        assert min(new.edges) > min(old.edges) + shift / 2, (name, old.edges, new.edges)

    # --- canary under (shifted) traffic, then promotion
    summaries: list[str] = []

    def promoted() -> bool:
        client.send([shifted(r) for r in loop.sample(BATCH)])
        st = loop.status("ModelDeployment", "iris")
        if st.get("trafficSummary") and (not summaries or summaries[-1] != st["trafficSummary"]):
            summaries.append(st["trafficSummary"])
        assert (st.get("history") or [{}])[-1].get("action") != "RolledBack", st
        stable = (st.get("stable") or {}).get("version")
        return stable == retrain and st.get("phase") == "Healthy"

    wait_until(promoted, 60, 0.05, f"{retrain} promoted")
    assert "stable 50 / canary 50" in summaries, summaries
    assert client.seen.get(("canary", retrain), 0) > 0, client.seen
    steps = loop.events("ModelDeployment", "iris", "StepReached")
    assert any(f"canary {retrain} at weight 50" in s for s in steps), steps
    [promotion] = loop.events("ModelDeployment", "iris", "Promoted")
    assert retrain in promotion

    # --- the old distribution now drifts against the new baseline: the cooldown holds
    loop.watching("iris", retrain)
    before = loop.status("DriftMonitor", "iris")
    client.send(loop.sample(WINDOW))
    st = loop.checked("iris", before.get("lastCheckTime"))
    assert st["version"] == retrain
    assert st["phase"] == "Drifting", st["message"]
    assert {f["name"] for f in st["features"] if f["drifted"]} == set(SHIFT)
    assert "retrain waits for the cooldown" in st["message"], st["message"]
    assert "(drift, " in st["message"]
    assert [j["metadata"]["name"] for j in loop.owned_jobs("iris")] == [retrain]
    assert st["lastRetrain"]["name"] == retrain and st["retrains"] == 1
    assert len(loop.events("DriftMonitor", "iris", "RetrainCreated")) == 1


def test_exact_ks_on_the_servers_recent_rows(loop: Loop) -> None:
    client = loop.serving("iris-side", "iris-v1")
    loop.watching("iris-ks", "iris-v1")
    before = loop.status("DriftMonitor", "iris-ks").get("lastCheckTime")
    client.send(loop.sample(WINDOW))
    st = loop.checked("iris-ks", before)
    assert st["phase"] == "Healthy", st["message"]
    client.send([shifted(r) for r in loop.sample(WINDOW)])
    st = loop.checked("iris-ks", st["lastCheckTime"])
    assert st["phase"] == "Drifting", st["message"]
    assert {f["name"] for f in st["features"] if f["drifted"]} == set(SHIFT)
    assert {f["method"] for f in st["features"]} == {"ks"}
    assert "features tested exactly on" in st["message"], st["message"]
    assert loop.owned_jobs("iris-ks") == []


def test_degrading_feedback_labels_trigger_on_live_accuracy(loop: Loop) -> None:
    client = loop.serving("iris-side", "iris-v1")

    def checkpointed() -> bool:
        cp = loop.status("DriftMonitor", "iris-quality").get("checkpoint") or {}
        return "feedback" in cp

    wait_until(checkpointed, 30, 0.05, "iris-quality reading the router's feedback")

    def labelled(correct: bool) -> dict[str, Any]:
        items = []
        for row in loop.sample(40):
            answer = client.predict([row])
            label = row.label if correct else (row.label + 1) % 3
            items.append({"requestId": answer.request_id, "label": label})
        reply = client.feedback(items)
        assert reply["recorded"] == 40, reply
        return reply

    # --- labels that agree with the model: measured, no retrain
    labelled(correct=True)

    def live_measured() -> bool:
        return "live" in loop.status("DriftMonitor", "iris-quality")

    wait_until(live_measured, 30, 0.05, "live accuracy")
    live = loop.status("DriftMonitor", "iris-quality")["live"]
    assert live["samples"] == 40 and live["accuracy"] >= 0.9
    assert loop.owned_jobs("iris-quality") == []

    # --- labels degrade: live accuracy drops below 0.8 and retrains once
    labelled(correct=False)
    loop.retrained("iris-quality")
    st = loop.status("DriftMonitor", "iris-quality")
    assert st["live"]["samples"] == 40 and st["live"]["accuracy"] < 0.8
    assert_one_retrain(loop, "iris-quality", "performance", "live accuracy")
    [dropped] = loop.events("DriftMonitor", "iris-quality", "PerformanceDropped")
    assert "live accuracy" in dropped and "< min 0.8 over 40 labelled requests" in dropped


def assert_one_retrain(loop: Loop, monitor_name: str, trigger: str, why: str) -> None:
    [job] = loop.owned_jobs(monitor_name)
    labels = job["metadata"]["labels"]
    assert labels["pilotage.dev/trigger"] == trigger
    assert labels["pilotage.dev/monitor"] == monitor_name
    last = loop.status("DriftMonitor", monitor_name)["lastRetrain"]
    assert last["name"] == job["metadata"]["name"] and last["trigger"] == trigger
    assert why in last["message"]
    [created] = loop.events("DriftMonitor", monitor_name, "RetrainCreated")
    assert f"created by trigger {trigger}" in created


def reconciled_after_a_change(loop: Loop) -> Callable[[], bool]:
    """True once every resource was reconciled after this call, which follows a store write:
    the tick that sees a change reconciles everything; two ticks later it is surely done."""
    start = loop.runtime.ticks
    return lambda: loop.runtime.ticks >= start + 2


def test_retrain_annotation_creates_one_job_per_value(loop: Loop) -> None:
    loop.serving("iris-side", "iris-v1")
    assert cli.retrain(["iris-manual", "--state-dir", str(loop.store.state_dir)]) == 0
    token = loop.store.get("DriftMonitor", "iris-manual").metadata.annotations[
        "pilotage.dev/retrain"
    ]
    loop.retrained("iris-manual")
    assert_one_retrain(loop, "iris-manual", "manual", f"pilotage.dev/retrain={token}")
    # the same value written again is not a new request (the cooldown is 0s here)
    loop.store.set_annotation("DriftMonitor", "iris-manual", "pilotage.dev/retrain", token)
    wait_until(reconciled_after_a_change(loop), 10, 0.05, "a reconcile of the same value")
    assert len(loop.owned_jobs("iris-manual")) == 1


def test_changed_dataset_content_retrains_on_the_new_snapshot(loop: Loop) -> None:
    loop.serving("iris-side", "iris-v1")

    def fingerprint() -> str | None:
        st = loop.status("Dataset", "iris-daily")
        return st.get("fingerprint") if st.get("phase") == "Ready" else None

    wait_until(lambda: fingerprint() is not None, 60, 0.1, "iris-daily profiled")
    first = fingerprint()
    wait_until(
        lambda: loop.status("DriftMonitor", "iris-daily").get("datasetFingerprint") == first,
        30,
        0.05,
        "iris-daily monitor recording the fingerprint",
    )
    assert loop.owned_jobs("iris-daily") == []

    # new rows arrive in the file; the Dataset is re-profiled
    write_csv(loop.tmp / "daily.csv", loop.rows + loop.sample(30))
    assert cli.refresh(["iris-daily", "--state-dir", str(loop.store.state_dir)]) == 0
    wait_until(lambda: fingerprint() not in (None, first), 60, 0.1, "the new fingerprint")
    second = fingerprint()
    assert second is not None
    loop.retrained("iris-daily")
    assert_one_retrain(loop, "iris-daily", "datasetChange", f"changed to {second[:12]}")
    assert loop.status("DriftMonitor", "iris-daily")["datasetFingerprint"] == second

    [job] = loop.owned_jobs("iris-daily")
    name = job["metadata"]["name"]

    def trained_on() -> str | None:
        return loop.status("TrainingJob", name).get("datasetFingerprint")

    wait_until(lambda: trained_on() is not None, 60, 0.1, f"{name} reading its Dataset")
    assert trained_on() == second
