"""The reconcile loop through the platform protocol, on the in-memory platform: what each
reconcile observes is what the earlier ones' actions did to the world (a run started, a
server up, a table served), as in the operator and the embedded runtime."""

from __future__ import annotations

import inspect
from typing import Any, get_args

import pytest

from pilotage.api import Dataset, TrainingJob
from pilotage.api.conditions import get
from pilotage.api.modelcard import ModelCard
from pilotage.control.common import format_time
from pilotage.control.platform import Platform, carry_out, method_of
from pilotage.control.types import (
    Action,
    CreateTrainingJob,
    DeleteRun,
    EnsureRouter,
    EnsureServer,
    RemoveServer,
    StartRun,
)
from pilotage.local.platform import LocalPlatform
from pilotage.operator.platform import KubernetesPlatform
from tests.control.factories import ARTIFACTS, at, dataset, deployment, ready_dataset
from tests.control.fake_platform import FakePlatform
from tests.control.test_driftmonitor import BASELINE, Server, monitor

GATES = {"gates": [{"metric": "accuracy", "min": 0.9}]}
PROFILE = {"rows": 150, "columns": 5, "fingerprint": "ab" * 32, "profileUri": "file:///p.json"}
STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "30s"}},
    {"setWeight": 50},
    {"pause": {"duration": "20s"}},
]
CANARY = {"type": "Canary", "canary": {"steps": STEPS}}
ANALYSIS = {"interval": "10s", "minRequests": 10, "errorRate": {"max": 0.05}}


def summary(version: str, accuracy: float = 0.96) -> dict[str, Any]:
    return {
        "modelVersion": version,
        "modelUri": f"{ARTIFACTS}/default/iris-{version}/{version}",
        "metrics": {"accuracy": accuracy},
        "onnxParity": {"maxAbsDiff": 1e-6, "labelAgreement": 1.0},
        "datasetFingerprint": "f" * 64,
    }


def training_job(version: str, created: float, **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {
                "name": f"iris-{version}",
                "generation": 1,
                "labels": {"app": "iris"},
                "creationTimestamp": format_time(at(created)),
            },
            "spec": {
                "datasetRef": {"name": "iris"},
                "model": {"algorithm": "logistic_regression"},
                "evaluation": GATES,
                **spec,
            },
        }
    )


def started_runs(fake: FakePlatform, purpose: str) -> list[StartRun]:
    return [a for a in fake.actions if isinstance(a, StartRun) and a.purpose == purpose]


def trained(fake: FakePlatform, version: str, at: float) -> None:
    """A TrainingJob of `version` run to success through the loop."""
    fake.put(training_job(version, at))
    fake.reconcile("TrainingJob", f"iris-{version}", at)
    run = fake.get("TrainingJob", f"iris-{version}").status.run
    fake.finish_run(run, summary(version))
    fake.reconcile("TrainingJob", f"iris-{version}", at + 1)
    assert fake.get("TrainingJob", f"iris-{version}").status.phase == "Succeeded"


def status_of(fake: FakePlatform, kind: str = "ModelDeployment", name: str = "iris") -> Any:
    return fake.get(kind, name).status


@pytest.mark.parametrize("action", get_args(Action), ids=lambda a: a.__name__)
def test_every_action_has_its_method_on_the_protocol_and_on_every_platform(action: type) -> None:
    method = method_of(action)
    assert method in Platform.__dict__, f"Platform has no {method} for {action.__name__}"
    for platform in (FakePlatform, KubernetesPlatform, LocalPlatform):
        params = list(inspect.signature(getattr(platform, method)).parameters)
        assert params[0] == "self" and len(params) == 3, f"{platform.__name__}.{method}"


def test_carry_out_calls_the_method_of_the_action() -> None:
    fake = FakePlatform()
    carry_out(fake, "ml", EnsureRouter("iris", 2))
    carry_out(fake, "ml", StartRun("r1", "train", "TrainingJob", "iris-v1", [], "file:///o"))
    carry_out(fake, "ml", DeleteRun("r1"))
    assert fake.routers[("ml", "iris")].replicas == 2 and fake.runs == {}
    assert [type(a).__name__ for a in fake.actions] == ["EnsureRouter", "StartRun", "DeleteRun"]


# ---- TrainingJob ------------------------------------------------------------------------


def test_a_dataset_profiles_then_a_training_job_trains_a_model() -> None:
    fake = FakePlatform()
    fake.put(dataset())
    fake.put(training_job("v1", 0))

    fake.reconcile("Dataset", "iris", 0)
    [profile] = started_runs(fake, "profile")
    assert fake.run_state("default", profile.name) is not None  # the run exists now
    fake.reconcile("TrainingJob", "iris-v1", 1)
    tj = status_of(fake, "TrainingJob", "iris-v1")
    assert tj.phase == "Pending" and get(tj.conditions, "Ready").reason == "WaitingForDataset"
    assert started_runs(fake, "train") == []

    fake.finish_run(profile.name, PROFILE)
    fake.reconcile("Dataset", "iris", 5)
    ds = fake.get("Dataset", "iris")
    assert isinstance(ds, Dataset) and ds.status is not None
    assert ds.status.phase == "Ready" and ds.status.fingerprint == PROFILE["fingerprint"]

    fake.reconcile("TrainingJob", "iris-v1", 6)
    [train] = started_runs(fake, "train")
    assert [m["kind"] for m in train.manifests] == ["Dataset", "TrainingJob"]
    fake.reconcile("TrainingJob", "iris-v1", 7)  # still running: nothing starts again
    assert started_runs(fake, "train") == [train]
    tj = status_of(fake, "TrainingJob", "iris-v1")
    assert tj.phase == "Running" and tj.dataset_fingerprint == PROFILE["fingerprint"]

    fake.finish_run(train.name, summary("v1"))
    fake.reconcile("TrainingJob", "iris-v1", 40)
    tj = status_of(fake, "TrainingJob", "iris-v1")
    assert tj.phase == "Succeeded" and tj.model_version == "v1"
    assert tj.model_uri == summary("v1")["modelUri"] and tj.gates.passed


def test_a_failed_run_is_retried_under_a_new_name_then_a_deadline_deletes_it() -> None:
    fake = FakePlatform()
    fake.put(ready_dataset())
    fake.put(training_job("v1", 0, backoffLimit=2, activeDeadlineSeconds=100))
    fake.reconcile("TrainingJob", "iris-v1", 0)
    [first] = started_runs(fake, "train")

    fake.finish_run(first.name, {"message": "OOMKilled"}, ok=False)
    fake.reconcile("TrainingJob", "iris-v1", 10)
    [_, second] = started_runs(fake, "train")
    assert second.name != first.name and fake.run_state("default", second.name) is not None
    tj = status_of(fake, "TrainingJob", "iris-v1")
    assert tj.attempts == 2 and tj.phase == "Running" and tj.run == second.name
    assert ("TrainingJob/iris-v1", "TrainingRetry") in [(o, e.reason) for o, e in fake.events]

    fake.reconcile("TrainingJob", "iris-v1", 100)  # the second attempt runs past the deadline
    assert DeleteRun(second.name) in fake.actions
    assert fake.run_state("default", second.name) is None  # the platform deleted it
    tj = status_of(fake, "TrainingJob", "iris-v1")
    assert tj.phase == "Failed" and get(tj.conditions, "Ready").reason == "DeadlineExceeded"
    fake.reconcile("TrainingJob", "iris-v1", 200)
    assert len(started_runs(fake, "train")) == 2  # a finished generation never trains again


# ---- ModelDeployment ----------------------------------------------------------------------


def deployed(**spec: Any) -> FakePlatform:
    """v1 trained through the loop and serving all traffic."""
    fake = FakePlatform()
    fake.put(ready_dataset())
    trained(fake, "v1", 0)
    fake.put(deployment(strategy=CANARY, analysis=ANALYSIS, **spec))
    fake.reconcile("ModelDeployment", "iris", 10)
    assert set(fake.servers_of) == {("default", "iris", "v1")}
    assert ("default", "iris") in fake.routers
    assert status_of(fake).phase == "Progressing"  # the servers are not ready yet
    fake.boot()
    fake.reconcile("ModelDeployment", "iris", 15)
    md = status_of(fake)
    assert md.phase == "Healthy" and md.stable.version == "v1" and md.traffic == {"stable": 100}
    assert md.endpoint == "http://router.fake:8080"
    return fake


def canary_at_20(fake: FakePlatform) -> None:
    trained(fake, "v2", 100)
    fake.reconcile("ModelDeployment", "iris", 110)
    assert status_of(fake).candidate.version == "v2"
    assert not fake.servers_of[("default", "iris", "v2")].ready
    assert status_of(fake).traffic == {"stable": 100}  # no traffic to a server not yet up
    fake.boot()
    fake.reconcile("ModelDeployment", "iris", 111)
    assert status_of(fake).traffic == {"stable": 80, "canary": 20}
    serving = fake.routers[("default", "iris")].serving
    assert serving is not None and {(v.name, v.version) for v in serving.variants} == {
        ("stable", "v1"),
        ("canary", "v2"),
    }


def test_a_healthy_canary_is_analysed_on_the_router_counters_and_promoted() -> None:
    fake = deployed()
    canary_at_20(fake)
    t, weights, verdicts = 111, [], []
    while status_of(fake).stable.version != "v2":
        t += 10
        assert t < 400, f"not promoted: {status_of(fake).message}"
        fake.send("iris", 200)
        fake.reconcile("ModelDeployment", "iris", t)
        md = status_of(fake)
        weights.append(md.traffic.get("canary"))
        if md.last_analysis is not None:
            verdicts.append((md.last_analysis.verdict, md.last_analysis.requests))
    md = status_of(fake)
    assert md.traffic == {"stable": 100} and md.phase == "Healthy"
    assert [h.action for h in md.history] == ["Deployed", "RolloutStarted", "Promoted"]
    assert weights[0] == 20 and 50 in weights and weights[-1] is None
    # judged on what the router counted for the canary in each 10 s interval: 20 % then
    # 50 % of the 200 requests sent
    assert {v for v, _ in verdicts} == {"Pass"}
    assert {n for _, n in verdicts} == {40, 100}
    # The router serves the promoted table, so v1's servers go at the next reconcile.
    fake.reconcile("ModelDeployment", "iris", t + 1)
    assert RemoveServer("iris", "v1") in fake.actions
    assert set(fake.servers_of) == {("default", "iris", "v2")}
    serving = fake.routers[("default", "iris")].serving
    assert serving is not None and [(v.name, v.version) for v in serving.variants] == [
        ("stable", "v2")
    ]


def test_a_failing_canary_is_rolled_back_and_its_servers_removed() -> None:
    fake = deployed()
    canary_at_20(fake)
    fake.reconcile("ModelDeployment", "iris", 121)  # the analysis window opens on this table
    fake.send("iris", 500, errors_on="v2")
    fake.reconcile("ModelDeployment", "iris", 131)
    md = status_of(fake)
    assert md.candidate is None and md.rejected_version == "v2" and md.phase == "Degraded"
    assert get(md.conditions, "Ready").reason == "RolledBack"
    assert md.last_analysis.verdict == "Fail" and md.last_analysis.error_rate == 1.0
    assert set(fake.servers_of) == {("default", "iris", "v1")}
    serving = fake.routers[("default", "iris")].serving
    assert serving is not None and serving.weights() == {"stable": 100}
    assert [v.version for v in serving.variants] == ["v1"]
    fake.reconcile("ModelDeployment", "iris", 200)  # v2 is still the newest: not retried
    assert not fake.servers_of.get(("default", "iris", "v2"))


def test_the_old_stable_stays_until_the_router_serves_the_new_table() -> None:
    fake = deployed()
    canary_at_20(fake)
    fake.hold_tables = True  # the router keeps the canary table: a push still under way
    fake.put(
        fake.get("ModelDeployment", "iris").model_copy(
            update={"metadata": deployment(annotations={"pilotage.dev/promote": "full"}).metadata}
        )
    )
    fake.reconcile("ModelDeployment", "iris", 120)
    assert status_of(fake).stable.version == "v2" and status_of(fake).traffic == {"stable": 100}
    for t in (121, 122):
        fake.reconcile("ModelDeployment", "iris", t)
        assert ("default", "iris", "v1") in fake.servers_of  # the router still sends it requests
    fake.release_tables()
    fake.reconcile("ModelDeployment", "iris", 123)
    assert set(fake.servers_of) == {("default", "iris", "v2")}


def test_a_model_card_is_read_once_per_uri() -> None:
    uri = "s3://models/default/iris/2024-06"
    fake = FakePlatform()
    fake.cards[uri] = ModelCard.model_construct(version="iris-abc")
    fake.put(deployment(model={"uri": uri}))
    for t in (0, 1, 2):
        fake.reconcile("ModelDeployment", "iris", t)
    assert fake.card_reads == [uri]
    assert status_of(fake).stable.version == "iris-abc"  # the card names the version
    ensured = [(a.version, a.model_uri) for a in fake.actions if isinstance(a, EnsureServer)]
    assert set(ensured) == {("iris-abc", uri)}


def test_a_missing_model_card_is_read_again() -> None:
    uri = "s3://models/default/iris/2024-06"
    fake = FakePlatform()
    fake.put(deployment(model={"uri": uri}))
    for t in (0, 1):
        fake.reconcile("ModelDeployment", "iris", t)
    assert fake.card_reads == [uri, uri]
    assert status_of(fake).stable.version == "2024-06"  # without a card the path names it


# ---- DriftMonitor ----------------------------------------------------------------------


def test_drift_creates_one_retrain_that_trains_and_rolls_out() -> None:
    """The drift-retrain loop in memory: the monitor reads the stable version's card and
    server counters, drift creates a TrainingJob it owns, that job trains, and the
    deployment rolls the new model out as a canary."""
    fake = deployed()
    stable = status_of(fake).stable
    fake.cards[stable.uri] = ModelCard.model_construct(version="v1", baseline=BASELINE)
    server = Server()
    fake.counters[("default", "iris", "v1")] = (server.counters(),)
    fake.put(monitor())
    fake.reconcile("DriftMonitor", "iris-dm", 20)
    assert status_of(fake, "DriftMonitor", "iris-dm").version == "v1"
    server.send(400, shifted=True)
    fake.counters[("default", "iris", "v1")] = (server.counters(),)
    fake.reconcile("DriftMonitor", "iris-dm", 80)
    assert status_of(fake, "DriftMonitor", "iris-dm").phase == "Drifting"
    retrain = fake.get("TrainingJob", "iris-dm-retrain-1")
    assert retrain.metadata.labels["pilotage.dev/monitor"] == "iris-dm"
    assert fake.training_jobs("default", {"pilotage.dev/monitor": "iris-dm"})[0].owner_name == (
        "iris-dm"
    )
    assert fake.card_reads == [stable.uri]

    server.send(400, shifted=True)  # still drifting: the job it made is seen, none is added
    fake.counters[("default", "iris", "v1")] = (server.counters(),)
    fake.reconcile("DriftMonitor", "iris-dm", 140)
    assert [
        a.manifest["metadata"]["name"] for a in fake.actions if isinstance(a, CreateTrainingJob)
    ] == ["iris-dm-retrain-1"]
    assert fake.card_reads == [stable.uri]  # the card was cached

    fake.reconcile("TrainingJob", "iris-dm-retrain-1", 150)
    [run] = [a for a in started_runs(fake, "train") if a.owner_name == "iris-dm-retrain-1"]
    fake.finish_run(run.name, summary("iris-dm-retrain-1"))
    fake.reconcile("TrainingJob", "iris-dm-retrain-1", 200)
    assert status_of(fake, "TrainingJob", "iris-dm-retrain-1").phase == "Succeeded"
    fake.reconcile("ModelDeployment", "iris", 210)
    assert status_of(fake).candidate.version == "iris-dm-retrain-1"
    assert ("default", "iris", "iris-dm-retrain-1") in fake.servers_of
