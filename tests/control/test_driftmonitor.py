from __future__ import annotations

from typing import Any

import pytest

from pilotage.api.conditions import get
from pilotage.api.driftmonitor import DriftMonitor
from pilotage.api.modelcard import Baseline, CategoricalProfile, NumericProfile
from pilotage.control import drift_signal, reconcile_driftmonitor
from pilotage.control.types import (
    CreateTrainingJob,
    DriftMonitorObservation,
    FeedbackStats,
    Result,
    ServerCounters,
)
from tests.control.factories import at, deployment

EDGES = [1.0, 2.0, 3.0]
BASELINE = Baseline(
    rows=1000,
    features={
        "a": NumericProfile(edges=EDGES, proportions=[0.25] * 4),
        "b": NumericProfile(edges=EDGES, proportions=[0.25] * 4),
    },
    predictions=CategoricalProfile(categories=["x", "y"], proportions=[0.5, 0.5, 0.0]),
)
TEMPLATE = {
    "metadata": {"labels": {"app": "iris"}},
    "spec": {"datasetRef": {"name": "iris"}, "model": {"algorithm": "random_forest"}},
}


def monitor(annotations: dict[str, str] | None = None, **spec: Any) -> DriftMonitor:
    return DriftMonitor.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": "iris-dm", "generation": 1, "annotations": annotations or {}},
            "spec": {
                "deploymentRef": {"name": "iris"},
                "window": {"requests": 200},
                "minSamples": 100,
                "onDrift": {"retrain": {"template": TEMPLATE}, "cooldown": "10m"},
                **spec,
            },
        }
    )


class Server:
    """Cumulative counters of one server replica."""

    def __init__(self) -> None:
        self.bins: dict[str, dict[str, int]] = {f: {str(i): 0 for i in range(4)} for f in "ab"}
        self.rows = 0

    def send(self, rows: int, shifted: bool) -> None:
        for f in "ab":
            if shifted:
                self.bins[f]["3"] += rows
            else:
                for i in range(4):
                    self.bins[f][str(i)] += rows // 4
        self.rows += rows

    def counters(self) -> ServerCounters:
        return ServerCounters(
            features={f: dict(b) for f, b in self.bins.items()},
            predictions={"x": self.rows // 2, "y": self.rows - self.rows // 2},
            rows=self.rows,
            replica="pod-1",
        )


def observe(server: Server, **kwargs: Any) -> DriftMonitorObservation:
    return DriftMonitorObservation(
        deployment=deployment(),
        version="v1",
        baseline=BASELINE,
        counters=(server.counters(),),
        **kwargs,
    )


def step(
    dm: DriftMonitor, obs: DriftMonitorObservation, seconds: float
) -> tuple[DriftMonitor, Result[Any]]:
    result = reconcile_driftmonitor(dm, obs, at(seconds))
    return dm.model_copy(update={"status": result.status}), result


def created(result: Result[Any]) -> list[CreateTrainingJob]:
    return [a for a in result.actions if isinstance(a, CreateTrainingJob)]


def test_first_look_takes_a_checkpoint() -> None:
    dm, result = step(monitor(), observe(Server()), 0)
    assert dm.status is not None and dm.status.phase == "InsufficientData"
    assert dm.status.checkpoint is not None and dm.status.version == "v1"
    assert get(dm.status.conditions, "Ready").status == "True"  # type: ignore[union-attr]
    assert result.actions == [] and result.requeue_after == 60


def test_healthy_window_then_drift_creates_one_retrain() -> None:
    server = Server()
    dm, _ = step(monitor(), observe(server), 0)
    server.send(100, shifted=False)
    dm, result = step(dm, observe(server), 60)  # window not full: keep accumulating
    assert dm.status is not None and dm.status.last_check_time is None
    server.send(200, shifted=False)
    dm, result = step(dm, observe(server), 120)
    assert dm.status is not None and dm.status.phase == "Healthy" and dm.status.samples == 300
    assert dm.status.drift_score == 0.0 and created(result) == []

    server.send(400, shifted=True)
    dm, result = step(dm, observe(server), 180)
    assert dm.status is not None and dm.status.phase == "Drifting"
    assert dm.status.dataset_drift and dm.status.drift_score == 1.0
    assert dm.status.features[0].drifted and dm.status.features[0].score > 0.2
    reasons = [e.reason for e in result.events]
    assert "DriftDetected" in reasons and "RetrainCreated" in reasons
    [action] = created(result)
    manifest = action.manifest
    assert manifest["metadata"]["name"] == "iris-dm-retrain-1"
    assert manifest["metadata"]["labels"] == {
        "app": "iris",
        "pilotage.dev/monitor": "iris-dm",
        "pilotage.dev/trigger": "drift",
    }
    assert manifest["spec"]["version"] == "iris-dm-retrain-1"
    assert manifest["spec"]["model"]["algorithm"] == "random_forest"
    assert (action.owner_kind, action.owner_name) == ("DriftMonitor", "iris-dm")
    assert dm.status.last_retrain is not None and dm.status.last_retrain.trigger == "drift"
    assert "a psi=" in dm.status.last_retrain.message

    # The same drifting streak never retrains again, even after the cooldown.
    for t in (240, 1000):
        server.send(400, shifted=True)
        dm, result = step(dm, observe(server), t)
        assert created(result) == []
    assert dm.status is not None and dm.status.consecutive_drifting == 3

    signal = drift_signal(dm)
    assert signal is not None and signal.rollback and signal.since == at(180)


def test_consecutive_hysteresis() -> None:
    server = Server()
    dm, _ = step(monitor(consecutive=2), observe(server), 0)
    server.send(400, shifted=True)
    dm, result = step(dm, observe(server), 60)
    assert dm.status is not None and dm.status.phase == "Drifting" and created(result) == []
    sig = drift_signal(dm)
    assert sig is not None and not sig.rollback
    server.send(400, shifted=True)
    dm, result = step(dm, observe(server), 120)
    assert len(created(result)) == 1


def test_too_few_rows_is_insufficient_data() -> None:
    server = Server()
    dm, _ = step(monitor(window={"duration": "1m"}), observe(server), 0)
    server.send(40, shifted=True)
    dm, result = step(dm, observe(server), 61)
    assert dm.status is not None and dm.status.phase == "InsufficientData"
    assert dm.status.samples == 40 and not dm.status.dataset_drift and created(result) == []


def test_manual_retrain_waits_for_the_cooldown_and_acts_once() -> None:
    server = Server()
    dm, _ = step(monitor(), observe(server), 0)
    dm = monitor(annotations={"pilotage.dev/retrain": "r1"}).model_copy(
        update={"status": dm.status}
    )
    dm, result = step(dm, observe(server), 10)
    assert [a.manifest["metadata"]["labels"]["pilotage.dev/trigger"] for a in created(result)] == [
        "manual"
    ]
    dm = monitor(annotations={"pilotage.dev/retrain": "r2"}).model_copy(
        update={"status": dm.status}
    )
    dm, result = step(dm, observe(server), 20)
    assert created(result) == [] and dm.status is not None and "cooldown" in dm.status.message
    dm, result = step(dm, observe(server), 700)
    [action] = created(result)
    assert action.manifest["metadata"]["name"] == "iris-dm-retrain-2"
    dm, result = step(dm, observe(server), 2000)
    assert created(result) == []


def test_dataset_change_triggers_a_retrain() -> None:
    server = Server()
    dm, _ = step(monitor(retrainOnDatasetChange=True), observe(server, dataset_fingerprint="aa"), 0)
    dm, result = step(dm, observe(server, dataset_fingerprint="aa"), 10)
    assert created(result) == []
    dm, result = step(dm, observe(server, dataset_fingerprint="bb"), 20)
    [action] = created(result)
    assert action.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "datasetChange"
    assert dm.status is not None and dm.status.dataset_fingerprint == "bb"


def test_schedule_triggers_at_the_cron_time() -> None:
    server = Server()
    dm, result = step(monitor(schedule="*/5 * * * *"), observe(server), 0)
    assert created(result) == []
    dm, result = step(dm, observe(server), 200)
    assert (
        created(result) == [] and result.requeue_after is not None and result.requeue_after <= 100
    )
    dm, result = step(dm, observe(server), 301)
    [action] = created(result)
    assert action.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "schedule"


def test_a_schedule_that_falls_in_the_cooldown_retrains_when_the_cooldown_ends() -> None:
    server = Server()
    dm, _ = step(monitor(schedule="0 * * * *"), observe(server), 0)
    dm = monitor(annotations={"pilotage.dev/retrain": "r1"}, schedule="0 * * * *").model_copy(
        update={"status": dm.status}
    )
    dm, result = step(dm, observe(server), 3300)  # manual retrain at 00:55: cooldown to 01:05
    assert [a.manifest["metadata"]["labels"]["pilotage.dev/trigger"] for a in created(result)] == [
        "manual"
    ]
    dm, result = step(dm, observe(server), 3601)  # the 01:00 schedule, inside the cooldown
    assert created(result) == [] and dm.status is not None
    assert "retrain waits for the cooldown (schedule" in dm.status.message
    dm, result = step(dm, observe(server), 3901)
    [action] = created(result)
    assert action.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "schedule"
    dm, result = step(dm, observe(server), 3950)  # taken: the next one is at 02:00
    assert created(result) == []
    dm, result = step(dm, observe(server), 7201)
    assert [a.manifest["metadata"]["name"] for a in created(result)] == ["iris-dm-retrain-3"]


def test_live_accuracy_drop_triggers_a_retrain() -> None:
    server = Server()
    perf = {"metric": "accuracy", "min": 0.8, "minSamples": 50}
    dm, _ = step(monitor(performance=perf), observe(server, feedback=FeedbackStats()), 0)
    dm, result = step(dm, observe(server, feedback=FeedbackStats(labelled=30, correct=10)), 10)
    assert created(result) == []
    dm, result = step(dm, observe(server, feedback=FeedbackStats(labelled=60, correct=30)), 20)
    assert dm.status is not None and dm.status.live is not None
    assert dm.status.live.accuracy == pytest.approx(0.5)
    [action] = created(result)
    assert action.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "performance"
    assert "PerformanceDropped" in [e.reason for e in result.events]


def test_waits_for_the_deployment() -> None:
    result = reconcile_driftmonitor(monitor(), DriftMonitorObservation(deployment=None), at(0))
    assert result.status.phase == "Pending"
    assert get(result.status.conditions, "Ready").reason == "DeploymentNotFound"  # type: ignore[union-attr]


def test_invalid_spec_names_the_field() -> None:
    dm = monitor(schedule="every day")
    result = reconcile_driftmonitor(dm, observe(Server()), at(0))
    ready = get(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "InvalidSpec"
    assert ready.message.startswith("spec.schedule")


@pytest.mark.parametrize("method", ["chi2", "ks"])
def test_a_test_based_method_shows_its_p_value_beside_the_statistic(method: str) -> None:
    # The threshold of chi2 and ks is a p-value: status and the event show the p-value
    # it is compared with (and the statistic beside it), not the statistic alone.
    server = Server()
    dm, _ = step(monitor(method=method, threshold=0.01), observe(server), 0)
    server.send(400, shifted=True)
    dm, result = step(dm, observe(server), 60)
    assert dm.status is not None and dm.status.phase == "Drifting"
    feature = dm.status.features[0]
    assert feature.p_value is not None and feature.p_value < 0.01 < feature.score
    assert feature.threshold == 0.01
    dumped = dm.status.dump()["features"][0]
    assert dumped["pValue"] == feature.p_value
    detected = next(e for e in result.events if e.reason == "DriftDetected")
    assert f"a {method} p={feature.p_value:.3g} < 0.01 (statistic {feature.score:.4g})" in (
        detected.message
    )
    assert f"{method}={feature.score:.3f}" not in detected.message
    assert dm.status.prediction_drift is not None
    # PSI has no p-value: its score is what the threshold is compared with.
    server = Server()
    dm, _ = step(monitor(), observe(server), 0)
    server.send(400, shifted=True)
    dm, result = step(dm, observe(server), 60)
    assert dm.status is not None and dm.status.features[0].p_value is None
    detected = next(e for e in result.events if e.reason == "DriftDetected")
    assert f"a psi={dm.status.features[0].score:.3f}" in detected.message


def test_values_outside_the_dataset_schema_are_counted_per_window() -> None:
    from dataclasses import replace

    server = Server()
    counters = server.counters()
    dm, _ = step(monitor(), observe(server), 0)
    server.send(300, shifted=False)
    obs = observe(server)
    later = replace(obs.counters[0], out_of_schema={"a": 7, "b": 0})
    dm, _ = step(dm, replace(obs, counters=(later,)), 60)
    assert dm.status is not None and dm.status.phase == "Healthy"
    assert dm.status.out_of_schema == {"a": 7}
    assert dm.status.dump()["outOfSchema"] == {"a": 7}
    # The next window counts only what came since.
    server.send(300, shifted=False)
    obs = observe(server)
    dm, _ = step(
        dm, replace(obs, counters=(replace(obs.counters[0], out_of_schema={"a": 9}),)), 120
    )
    assert dm.status is not None and dm.status.out_of_schema == {"a": 2}
    assert counters.out_of_schema == {}


def test_the_servers_out_of_schema_counts_are_read() -> None:
    from pilotage.control.observe import server_counters

    doc = {"rows": 3, "features": {}, "outOfSchema": {"a": 3, "b": "x"}}
    assert server_counters(doc, "pod-1").out_of_schema == {"a": 3, "b": 0}
    assert server_counters({"rows": 0}, "pod-1").out_of_schema == {}
