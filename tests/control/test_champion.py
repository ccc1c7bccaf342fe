"""Issue 17, champion and challenger, as plain data: a retrain is compared with the stable
version on the same held-out rows and is deployable only if it is at least as good on the
gate metrics (within a margin); a worse one is kept, rejected, with both scores."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pilotage.api.conditions import get
from pilotage.api.modeldeployment import ModelDeploymentStatus
from pilotage.control import reconcile_trainingjob
from pilotage.control.trainingjob import judge_champion
from pilotage.control.types import RunState, TrainingJobObservation
from tests.control.factories import at, deployment, ready_dataset, trainingjob
from tests.control.test_driftmonitor import Server, created, monitor, observe, step


def watching(server: Server, md: Any) -> Any:
    return replace(observe(server), deployment=md)


STABLE = "file:///artifacts/default/iris-v1/v1"


def challenger(margin: float = 0.0, gates: Any = None) -> Any:
    evaluation: dict[str, Any] = {"champion": {"uri": STABLE, "version": "v1", "margin": margin}}
    if gates is not None:
        evaluation["gates"] = gates
    return trainingjob(name="iris-dm-retrain-1", evaluation=evaluation)


def finished(tj: Any, metrics: dict[str, float], champion: Any) -> Any:
    """Start the job's run, then see it succeed with these metrics and champion scores."""
    obs = TrainingJobObservation(dataset=ready_dataset(), run=None, artifact_uri="file:///a")
    started = reconcile_trainingjob(tj, obs, at(0))
    tj = tj.model_copy(update={"status": started.status})
    summary = {
        "phase": "Succeeded",
        "modelVersion": "iris-dm-retrain-1",
        "modelUri": "file:///a/default/iris-dm-retrain-1/iris-dm-retrain-1",
        "metrics": metrics,
        "onnxParity": {"maxAbsDiff": 1e-6, "labelAgreement": 1.0},
        "champion": champion,
    }
    run = RunState(name=started.status.run or "", phase="Succeeded", result=summary)
    obs = TrainingJobObservation(dataset=ready_dataset(), run=run, artifact_uri="file:///a")
    return reconcile_trainingjob(tj, obs, at(30))


def test_a_worse_challenger_is_kept_rejected_with_both_scores() -> None:
    """The issue's case: 0.648 replaced a stable 0.68 because only absolute gates counted."""
    gates = [{"metric": "accuracy", "min": 0.6}]
    result = finished(challenger(gates=gates), {"accuracy": 0.648}, {"metrics": {"accuracy": 0.68}})
    st = result.status
    assert st.phase == "Succeeded" and st.metrics == {"accuracy": 0.648}
    assert st.champion is not None and st.champion.metrics == {"accuracy": 0.68}
    assert st.champion.passed is False and st.champion.version == "v1"
    assert "accuracy 0.648 < stable version v1's 0.68" in st.champion.message
    assert st.gates is not None and not st.gates.passed  # so no selector picks it
    assert [r.passed for r in st.gates.results] == [True]  # the absolute gate held
    ready = get(st.conditions, "Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "ChampionBetter")
    assert [e.reason for e in result.events][-1] == "ChallengerRejected"


def test_a_challenger_as_good_within_the_margin_is_deployable() -> None:
    same = finished(challenger(), {"accuracy": 0.68}, {"metrics": {"accuracy": 0.68}})
    assert same.status.champion.passed is True
    assert same.status.gates is not None and same.status.gates.passed
    assert get(same.status.conditions, "Ready").status == "True"  # type: ignore[union-attr]
    close = finished(challenger(margin=0.05), {"accuracy": 0.648}, {"metrics": {"accuracy": 0.68}})
    assert close.status.champion.passed is True and "margin 0.05" in close.status.champion.message


def test_lower_is_better_metrics_and_an_unscored_champion() -> None:
    gates = [{"metric": "mae", "max": 10.0}, {"metric": "r2", "min": 0.1}]
    tj = challenger(gates=gates)
    worse = judge_champion(tj, {"mae": 3.1, "r2": 0.5}, {"metrics": {"mae": 3.0, "r2": 0.4}})
    assert worse is not None and worse.passed is False and "mae 3.1 > stable" in worse.message
    better = judge_champion(tj, {"mae": 2.9, "r2": 0.5}, {"metrics": {"mae": 3.0, "r2": 0.4}})
    assert better is not None and better.passed is True
    unscored = finished(tj, {"mae": 3.1, "r2": 0.5}, {"error": "it reads input 'x'"})
    st = unscored.status
    assert st.champion is not None and st.champion.passed is None
    assert "not scored (it reads input 'x')" in st.champion.message
    assert st.gates is not None and st.gates.passed  # the gates alone judged


def test_a_drift_retrain_names_the_stable_version_as_its_champion() -> None:
    md = deployment().model_copy(
        update={
            "status": ModelDeploymentStatus.model_validate(
                {"stable": {"version": "v1", "uri": STABLE}}
            )
        }
    )
    server = Server()
    dm, _ = step(monitor(), watching(server, md), 0)
    server.send(400, shifted=True)
    dm, result = step(dm, watching(server, md), 60)
    [action] = created(result)
    assert action.manifest["spec"]["evaluation"]["champion"] == {
        "uri": STABLE,
        "version": "v1",
        "margin": 0.0,
    }
    off = monitor(onDrift={"retrain": {"template": {"spec": {"datasetRef": {"name": "iris"},
        "model": {"algorithm": "decision_tree"}}}}, "champion": {"compare": False}})  # fmt: skip
    dm, _ = step(off, watching(server, md), 0)
    server.send(400, shifted=False)
    server.send(800, shifted=True)
    dm, result = step(dm, watching(server, md), 60)
    [action] = created(result)
    assert "champion" not in action.manifest["spec"].get("evaluation", {})
