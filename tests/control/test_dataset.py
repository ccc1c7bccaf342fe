from __future__ import annotations

from typing import Any

import pytest

from pilotage.api.conditions import get
from pilotage.control import reconcile_dataset
from pilotage.control.types import DatasetObservation, DeleteRun, RunState, StartRun
from tests.control.factories import ARTIFACTS, at, dataset

SUMMARY = {"rows": 150, "columns": 5, "fingerprint": "ab" * 32, "profileUri": "file:///p.json"}


def obs(run: RunState | None = None) -> DatasetObservation:
    return DatasetObservation(run=run, artifact_uri=ARTIFACTS)


def test_first_reconcile_starts_a_profiling_run() -> None:
    result = reconcile_dataset(dataset(), obs(), at(0))
    start = result.actions[0]
    assert isinstance(start, StartRun)
    assert start.purpose == "profile" and start.owner_kind == "Dataset"
    assert start.manifests[0]["spec"]["source"]["uri"] == "builtin://iris"
    assert start.output_uri.startswith(f"{ARTIFACTS}/default/datasets/iris/")
    assert result.status.phase == "Validating" and result.status.run == start.name
    assert get(result.status.conditions, "Reconciling") is not None
    assert get(result.status.conditions, "Ready").status == "False"  # type: ignore[union-attr]
    assert result.status.observed_generation == 1


def profiled(run_phase: str, result: Any = None, message: str = "") -> Any:
    first = reconcile_dataset(dataset(), obs(), at(0))
    ds = dataset(status=first.status.dump())
    run = RunState(first.status.run or "", run_phase, at(0), at(5), result, message)  # type: ignore[arg-type]
    return reconcile_dataset(ds, obs(run), at(6))


@pytest.mark.parametrize(
    ("run_phase", "summary", "phase", "reason", "stalled"),
    [
        ("Running", None, "Validating", "Profiling", False),
        ("Succeeded", SUMMARY, "Ready", "Profiled", False),
        (
            "Succeeded",
            {**SUMMARY, "findings": [{"column": "x", "kind": "missing", "count": 3}]},
            "Ready",
            "Profiled",
            False,
        ),
        (
            "Succeeded",
            {
                **SUMMARY,
                "findings": [
                    {"column": "x", "kind": "outOfRange", "count": 3, "severity": "error"}
                ],
            },
            "Failed",
            "ValidationFailed",
            True,
        ),
        ("Succeeded", {"rows": 3}, "Failed", "RunResultInvalid", True),
        ("Failed", None, "Failed", "ProfilingFailed", True),
    ],
)
def test_run_outcomes(run_phase: str, summary: Any, phase: str, reason: str, stalled: bool) -> None:
    result = profiled(run_phase, summary, "cannot read s3://b/k")
    status = result.status
    assert status.phase == phase
    assert get(status.conditions, "Ready").reason == reason  # type: ignore[union-attr]
    assert (get(status.conditions, "Stalled") is not None) == stalled
    assert not [a for a in result.actions if isinstance(a, StartRun)]
    if phase == "Ready":
        assert status.rows == 150 and status.fingerprint == "ab" * 32
        assert get(status.conditions, "Ready").status == "True"  # type: ignore[union-attr]
        assert get(status.conditions, "Reconciling") is None
        assert [e.reason for e in result.events] == ["Profiled"]


def test_new_generation_reprofiles_and_stops_the_old_run() -> None:
    done = profiled("Running")
    ds = dataset(generation=2, status=done.status.dump())
    old_run = RunState(done.status.run or "", "Running")
    result = reconcile_dataset(ds, obs(old_run), at(10))
    assert isinstance(result.actions[0], DeleteRun) and result.actions[0].name == old_run.name
    start = result.actions[1]
    assert isinstance(start, StartRun) and start.name != old_run.name and "g2" in start.name
    assert result.status.observed_generation == 2


def test_refresh_annotation_reprofiles_once() -> None:
    done = profiled("Succeeded", SUMMARY)
    ds = dataset(annotations={"pilotage.dev/refresh": "now"}, status=done.status.dump())
    first = reconcile_dataset(ds, obs(), at(20))
    assert any(isinstance(a, StartRun) for a in first.actions)
    again = reconcile_dataset(
        dataset(annotations={"pilotage.dev/refresh": "now"}, status=first.status.dump()),
        obs(RunState(first.status.run or "", "Running")),
        at(21),
    )
    assert not any(isinstance(a, StartRun) for a in again.actions)


def test_a_lost_run_is_asked_for_again_under_the_same_name() -> None:
    first = reconcile_dataset(dataset(), obs(), at(0))
    again = reconcile_dataset(dataset(status=first.status.dump()), obs(None), at(3))
    start = again.actions[0]
    assert isinstance(start, StartRun) and start.name == first.status.run


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": {"uri": "builtin://mnist"}}, "spec.source.uri"),
        ({"source": {"uri": "s3://bucket/data"}}, "spec.source.format"),
        ({"target": "y", "features": ["a", "y"]}, "spec.features"),
        ({"schema": [{"name": "a", "type": "float"}, {"name": "a", "type": "int"}]}, "spec.schema"),
    ],
)
def test_invalid_spec_is_stalled_naming_the_field(spec: dict[str, Any], field: str) -> None:
    result = reconcile_dataset(dataset(**spec), obs(), at(0))
    ready = get(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "InvalidSpec" and ready.message.startswith(field)
    assert get(result.status.conditions, "Stalled") is not None
    assert result.actions == []
    assert [e.type for e in result.events] == ["Warning"]


def test_the_profile_summary_and_inferred_task_reach_the_status() -> None:
    column = {"name": "target", "role": "target", "type": "int", "missing": 0, "distinct": 3}
    feature = {"name": "petal", "role": "feature", "type": "float", "missing": 2, "distinct": 40}
    feature |= {"min": 0.1, "max": 2.5}
    summary = {
        **SUMMARY,
        "target": "target",
        "task": "classification",
        "summary": [column, feature],
    }
    result = profiled("Succeeded", summary)
    status = result.status
    assert status.phase == "Ready" and status.task == "classification" and status.target == "target"
    assert [c.name for c in status.summary] == ["target", "petal"]
    assert status.summary[1].missing == 2 and status.summary[1].max == 2.5
    bad = profiled("Succeeded", {**summary, "task": "clustering"})
    assert bad.status.phase == "Failed" and "clustering" in bad.status.conditions[0].message
