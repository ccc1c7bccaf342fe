from __future__ import annotations

from typing import Any

import pytest

from pilotage.api.conditions import get
from pilotage.api.trainingjob import TrainingJob
from pilotage.control import reconcile_trainingjob
from pilotage.control.types import DeleteRun, Result, RunState, StartRun, TrainingJobObservation
from tests.control.factories import ARTIFACTS, at, dataset, ready_dataset, trainingjob

GATES = {"gates": [{"metric": "accuracy", "min": 0.9}]}
SUMMARY = {
    "modelVersion": "iris-v1",
    "modelUri": f"{ARTIFACTS}/default/iris-v1/iris-v1",
    "metrics": {"accuracy": 0.96, "f1_macro": 0.95},
    "onnxParity": {"maxAbsDiff": 1e-6, "labelAgreement": 1.0},
    "datasetFingerprint": "f" * 64,
}


def obs(run: RunState | None = None, ds: Any = "ready") -> TrainingJobObservation:
    return TrainingJobObservation(
        dataset=ready_dataset() if ds == "ready" else ds, run=run, artifact_uri=ARTIFACTS
    )


def step(tj: TrainingJob, run: RunState | None, seconds: float) -> tuple[TrainingJob, Result[Any]]:
    result = reconcile_trainingjob(tj, obs(run), at(seconds))
    return tj.model_copy(update={"status": result.status}), result


def started(**spec: Any) -> tuple[TrainingJob, StartRun]:
    tj, result = step(trainingjob(**spec), None, 0)
    start = result.actions[0]
    assert isinstance(start, StartRun)
    return tj, start


def test_start_carries_manifests_output_uri_and_resources() -> None:
    tj, start = started(
        output={"uri": "s3://models/base/"},
        version="v7",
        resources={"limits": {"cpu": "2"}},
        activeDeadlineSeconds=600,
    )
    assert start.purpose == "train" and start.owner_name == "iris-v1"
    assert [m["kind"] for m in start.manifests] == ["Dataset", "TrainingJob"]
    assert start.output_uri == "s3://models/base/default/iris-v1/v7"
    assert start.resources["limits"] == {"cpu": "2"}
    assert start.deadline_seconds == 600
    status = tj.status
    assert status is not None and status.phase == "Running" and status.attempts == 1
    assert status.run_generation == 1 and status.dataset_fingerprint == "f" * 64


def test_default_output_uri_uses_the_namespace() -> None:
    _, result = step(trainingjob(namespace="ml"), None, 0)
    start = result.actions[0]
    assert isinstance(start, StartRun) and start.output_uri == f"{ARTIFACTS}/ml/iris-v1/iris-v1"


@pytest.mark.parametrize(
    ("ds", "reason"),
    [(None, "DatasetNotFound"), (dataset(status={"phase": "Validating"}), "WaitingForDataset")],
)
def test_waits_for_the_dataset(ds: Any, reason: str) -> None:
    result = reconcile_trainingjob(trainingjob(), obs(None, ds), at(0))
    assert result.actions == []
    assert result.status.phase == "Pending"
    assert get(result.status.conditions, "Ready").reason == reason  # type: ignore[union-attr]
    assert get(result.status.conditions, "Reconciling") is not None
    assert result.requeue_after is not None


@pytest.mark.parametrize(
    ("summary", "evaluation", "phase", "reason", "ready"),
    [
        (SUMMARY, GATES, "Succeeded", "Succeeded", "True"),
        ({**SUMMARY, "metrics": {"accuracy": 0.5}}, GATES, "Succeeded", "GatesFailed", "False"),
        ({**SUMMARY, "metrics": {}}, GATES, "Succeeded", "GatesFailed", "False"),
        (
            {**SUMMARY, "onnxParity": {"maxAbsDiff": 0.01, "labelAgreement": 0.9}},
            GATES,
            "Failed",
            "ParityFailed",
            "False",
        ),
        ({"metrics": {"accuracy": 1.0}}, {}, "Failed", "RunResultInvalid", "False"),
        (None, {}, "Failed", "RunResultInvalid", "False"),
    ],
)
def test_success_outcomes(
    summary: Any, evaluation: Any, phase: str, reason: str, ready: str
) -> None:
    tj, start = started(evaluation=evaluation)
    tj, result = step(tj, RunState(start.name, "Succeeded", at(0), at(30), summary), 31)
    status = result.status
    assert status.phase == phase
    cond = get(status.conditions, "Ready")
    assert cond is not None and cond.reason == reason and cond.status == ready
    assert (get(status.conditions, "Stalled") is not None) == (ready == "False")
    if reason == "Succeeded":
        assert status.model_version == "iris-v1" and status.model_uri == SUMMARY["modelUri"]
        assert status.gates is not None and status.gates.passed
        assert status.completion_time == "2026-01-01T00:00:30Z"
    if reason in ("ParityFailed", "RunResultInvalid"):
        assert status.model_version is None  # never claims a version no usable run produced


def test_retries_up_to_the_backoff_limit_then_fails() -> None:
    tj, start = started(backoffLimit=1)
    tj, result = step(tj, RunState(start.name, "Failed", message="OOMKilled"), 10)
    retry = result.actions[0]
    assert isinstance(retry, StartRun) and retry.name != start.name
    assert tj.status is not None and tj.status.attempts == 2 and tj.status.phase == "Running"
    assert [e.reason for e in result.events] == ["TrainingRetry"]
    tj, result = step(tj, RunState(retry.name, "Failed", message="OOMKilled"), 20)
    assert result.actions == []
    assert tj.status is not None and tj.status.phase == "Failed"
    assert get(tj.status.conditions, "Ready").reason == "BackoffLimitExceeded"  # type: ignore[union-attr]
    assert "OOMKilled" in tj.status.message


def test_a_non_retryable_failure_is_not_retried() -> None:
    tj, start = started(backoffLimit=3)
    failed = RunState(start.name, "Failed", result={"retryable": False}, message="bad column")
    tj, result = step(tj, failed, 10)
    assert result.actions == [] and tj.status is not None and tj.status.phase == "Failed"


def test_deadline_deletes_the_run_and_fails() -> None:
    tj, start = started(activeDeadlineSeconds=60)
    tj, result = step(tj, RunState(start.name, "Running"), 30)
    assert result.actions == [] and result.requeue_after is not None
    tj, result = step(tj, RunState(start.name, "Running"), 61)
    assert result.actions == [DeleteRun(start.name)]
    assert tj.status is not None and tj.status.phase == "Failed"
    assert get(tj.status.conditions, "Ready").reason == "DeadlineExceeded"  # type: ignore[union-attr]


def test_never_trains_the_same_generation_twice() -> None:
    tj, start = started()
    tj, _ = step(tj, RunState(start.name, "Succeeded", result=SUMMARY), 30)
    for seconds in (40, 50):
        tj, result = step(tj, None, seconds)  # the run was cleaned up
        assert result.actions == []
        assert tj.status is not None and tj.status.phase == "Succeeded"


def test_a_new_generation_trains_again_and_forgets_the_old_model() -> None:
    tj, start = started()
    tj, _ = step(tj, RunState(start.name, "Succeeded", result=SUMMARY), 30)
    changed = trainingjob(generation=2, status=tj.status.dump() if tj.status else None)
    changed, result = step(changed, None, 40)
    start2 = result.actions[0]
    assert isinstance(start2, StartRun) and "g2" in start2.name
    assert changed.status is not None and changed.status.model_version is None
    assert changed.status.run_generation == 2


def test_a_lost_run_is_asked_for_again_under_the_same_name() -> None:
    tj, start = started()
    _, result = step(tj, None, 5)
    again = result.actions[0]
    assert isinstance(again, StartRun) and again.name == start.name


def test_invalid_spec_names_the_field() -> None:
    tj = trainingjob(
        task="regression",
        model={"algorithm": "ridge"},
        evaluation={"gates": [{"metric": "accuracy", "min": 0.5}]},
    )
    result = reconcile_trainingjob(tj, obs(), at(0))
    ready = get(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "InvalidSpec"
    assert ready.message.startswith("spec.evaluation.gates[0].metric")
    assert result.actions == []


def _profiled(task: str) -> Any:
    return dataset(
        status={
            "phase": "Ready",
            "observedGeneration": 1,
            "fingerprint": "f" * 64,
            "target": "target",
            "task": task,
        }
    )


def test_a_gate_of_the_wrong_task_is_refused_when_the_task_is_inferred() -> None:
    # The regression the Dataset's profile infers makes a roc_auc gate unusable: no run
    # starts (it would fail three times), the condition says why and how to change it.
    tj = trainingjob(
        model={"algorithm": "ridge"}, evaluation={"gates": [{"metric": "roc_auc", "min": 0.8}]}
    )
    result = reconcile_trainingjob(
        tj, TrainingJobObservation(_profiled("regression"), None, ARTIFACTS), at(0)
    )
    assert result.actions == [] and result.status.phase == "Failed"
    ready = get(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "InvalidSpec"
    assert ready.message.startswith("spec.evaluation.gates[0].metric: roc_auc is not a regression")
    assert "inferred from Dataset iris" in ready.message
    assert [e.reason for e in result.events] == ["InvalidSpec"]
    # The same job on a data set whose target is classes trains.
    result = reconcile_trainingjob(
        trainingjob(evaluation={"gates": [{"metric": "roc_auc", "min": 0.8}]}),
        TrainingJobObservation(_profiled("classification"), None, ARTIFACTS),
        at(0),
    )
    assert isinstance(result.actions[0], StartRun)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"model": {"algorithm": "random_forest", "hyperparameters": {"n_estimator": 10}}},
            "spec.model.hyperparameters: n_estimator (did you mean n_estimators?) is not a "
            "parameter of random_forest",
        ),
        (
            {
                "model": {"algorithm": "random_forest"},
                "search": {"parameters": {"max_dept": [2, 4]}},
            },
            "spec.search.parameters: max_dept (did you mean max_depth?)",
        ),
        (
            {"search": {"parameters": {"C": [0.1, 1, 10], "tol": [1e-4, 1e-3]}, "maxTrials": 5}},
            "spec.search: the grid has 6 combinations, more than maxTrials=5",
        ),
        (
            {"model": {"algorithm": "linear_regression"}},
            "spec.model.algorithm: linear_regression does not do classification",
        ),
    ],
)
def test_a_deterministic_spec_error_starts_no_run(spec: dict[str, Any], message: str) -> None:
    result = reconcile_trainingjob(
        trainingjob(**spec),
        TrainingJobObservation(_profiled("classification"), None, ARTIFACTS),
        at(0),
    )
    assert result.actions == [] and result.status.phase == "Failed"
    ready = get(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "InvalidSpec"
    assert ready.message.startswith(message), ready.message


def test_exit_status_2_is_never_retried() -> None:
    # A spec error only the trainer can see (e.g. a hyperparameter value the estimator
    # refuses) ends the run with the manifest-error exit status: one attempt, InvalidSpec.
    tj, start = started(backoffLimit=3)
    failed = RunState(start.name, "Failed", message="exit status 2: bad value", exit_code=2)
    tj, result = step(tj, failed, 10)
    assert result.actions == [] and tj.status is not None and tj.status.phase == "Failed"
    assert tj.status.attempts == 1
    assert get(tj.status.conditions, "Ready").reason == "InvalidSpec"  # type: ignore[union-attr]
    assert "not retried" in tj.status.message and "bad value" in tj.status.message
    # Any other failure is retried.
    tj, start = started(backoffLimit=3)
    tj, result = step(tj, RunState(start.name, "Failed", message="OOMKilled", exit_code=137), 10)
    assert isinstance(result.actions[0], StartRun) and tj.status is not None
    assert tj.status.attempts == 2


def test_the_search_outcome_and_task_reach_the_status() -> None:
    tj, start = started(search={"parameters": {"C": [0.1, 1.0]}})
    search = {
        "bestParameters": {"C": 1.0},
        "bestScore": 0.953,
        "scoring": "accuracy",
        "trials": 2,
        "folds": 5,
    }
    summary = {**SUMMARY, "search": search, "task": "classification"}
    tj, result = step(tj, RunState(start.name, "Succeeded", at(0), at(30), summary), 31)
    assert result.status.search is not None
    assert result.status.search.best_parameters == {"C": 1.0}
    assert result.status.search.best_score == 0.953 and result.status.search.trials == 2
    assert result.status.task == "classification"


def test_the_outcome_message_follows_the_users_metric_order() -> None:
    tj, start = started(evaluation={"metrics": ["f1_macro", "accuracy"]})
    summary = {**SUMMARY, "metrics": {"accuracy": 0.96, "f1_macro": 0.95}}
    tj, result = step(tj, RunState(start.name, "Succeeded", at(0), at(30), summary), 31)
    assert result.status.message.endswith("ready: f1_macro 0.95, accuracy 0.96")


def _with_snapshot(run: str) -> Any:
    ds = ready_dataset()
    assert ds.status is not None
    snapshot = {"uri": f"{ARTIFACTS}/default/datasets/iris/{run}/snapshot.parquet", "rows": 90}
    status = ds.status.model_dump(by_alias=True) | {"snapshot": snapshot}
    return ds.model_copy(update={"status": type(ds.status).model_validate(status)})


def test_a_retry_learns_from_the_snapshot_the_first_attempt_recorded() -> None:
    """A DriftMonitor can profile a `logs://` Dataset again while a run fails: the retry
    (and a lost run asked for again) must train on the snapshot `status.datasetSnapshot`
    names, not on the newer one."""
    first = _with_snapshot("profile-1")
    tj, result = reconcile_step(trainingjob(backoffLimit=2), None, first, 0)
    start = result.actions[0]
    assert isinstance(start, StartRun)
    assert start.data[0].uri.endswith("/profile-1/snapshot.parquet")
    assert tj.status is not None and tj.status.dataset_snapshot is not None

    refreshed = _with_snapshot("profile-2")
    tj, result = reconcile_step(tj, None, refreshed, 5)  # the run is not seen: asked again
    [again] = result.actions
    assert isinstance(again, StartRun) and again.name == start.name
    assert again.data[0].uri.endswith("/profile-1/snapshot.parquet")
    tj, result = reconcile_step(
        tj, RunState(start.name, "Failed", message="OOMKilled"), refreshed, 10
    )
    retry = result.actions[0]
    assert isinstance(retry, StartRun) and retry.name != start.name
    assert retry.data[0].uri.endswith("/profile-1/snapshot.parquet")
    train_manifest = retry.manifests[0]["spec"]["source"]
    assert train_manifest["uri"].endswith("/profile-1/snapshot.parquet")
    assert tj.status is not None and tj.status.dataset_snapshot is not None
    assert tj.status.dataset_snapshot.uri.endswith("/profile-1/snapshot.parquet")

    # a new generation of the TrainingJob is a new training: it takes the newer snapshot
    newer = tj.model_copy(update={"metadata": tj.metadata.model_copy(update={"generation": 2})})
    _, result = reconcile_step(newer, None, refreshed, 20)
    fresh = next(a for a in result.actions if isinstance(a, StartRun))
    assert fresh.data[0].uri.endswith("/profile-2/snapshot.parquet")


def reconcile_step(
    tj: TrainingJob, run: RunState | None, ds: Any, seconds: float
) -> tuple[TrainingJob, Result[Any]]:
    result = reconcile_trainingjob(tj, obs(run, ds), at(seconds))
    return tj.model_copy(update={"status": result.status}), result
