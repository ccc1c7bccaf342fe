"""A `logs://NAME` Dataset without a sink reads the sink of the ModelDeployment it names:
the reconciler gets that deployment through its observation (pure, no I/O), resolves the
sink into the source its profiling run reads, and says in one line, with a reason, why it
cannot while the deployment is missing, logs nowhere, or logs to a collector; it looks
again soon and starts the run by itself once it can."""

from __future__ import annotations

from typing import Any

import pytest

from pilotage.api.conditions import get
from pilotage.api.dataset import Dataset, DataSource
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.control import reconcile_dataset
from pilotage.control.dataset import UNRESOLVED_POLL_SECONDS
from pilotage.control.platform import Observer
from pilotage.control.types import DatasetObservation, DeleteRun, Result, RunState, StartRun
from tests.control.factories import ARTIFACTS, at, dataset, deployment
from tests.control.fake_platform import FakePlatform

FILE_SINK = "file:///var/log/pilotage"


def live(**logs: Any) -> Dataset:
    source: dict[str, Any] = {"uri": "logs://iris"}
    if logs:
        source["inferenceLogs"] = logs
    return dataset(source=source, target="target")


def logging_to(sink: str | None, sample_rate: float = 1.0) -> ModelDeployment:
    if sink is None:
        return deployment()
    return deployment(logging={"sampleRate": sample_rate, "sink": {"uri": sink}})


def obs(md: ModelDeployment | None, run: RunState | None = None) -> DatasetObservation:
    return DatasetObservation(run=run, artifact_uri=ARTIFACTS, deployment=md)


def started(result: Result[Any]) -> StartRun:
    (start,) = [a for a in result.actions if isinstance(a, StartRun)]
    return start


def read_sink(start: StartRun) -> str:
    """The sink the run's manifest names and the source its pod is given (the same)."""
    manifest_sink = start.manifests[0]["spec"]["source"]["inferenceLogs"]["sink"]
    (data,) = start.data
    assert data.inference_logs is not None and data.inference_logs.sink == manifest_sink
    return str(manifest_sink)


def ready(result: Result[Any]) -> Any:
    return get(result.status.conditions, "Ready")


def test_without_a_sink_the_run_reads_the_deployments_sink() -> None:
    result = reconcile_dataset(live(window="1h"), obs(logging_to(FILE_SINK)), at(0))
    start = started(result)
    assert read_sink(start) == FILE_SINK
    # The rest of inferenceLogs is the Dataset's own.
    assert start.manifests[0]["spec"]["source"]["inferenceLogs"]["window"] == "1h"
    assert result.status.phase == "Validating"
    (event,) = result.events
    assert event.reason == "ProfilingStarted" and FILE_SINK in event.message


def test_logs_uri_alone_reads_the_deployments_sink_with_the_defaults() -> None:
    start = started(reconcile_dataset(live(), obs(logging_to("pvc://logs/inference")), at(0)))
    assert read_sink(start) == "pvc://logs/inference"
    # A pvc:// sink resolved from the deployment is mounted into the profiling pod.
    from pilotage import sources

    assert sources.source_for("logs://iris").access(start.data[0]).claims == ("logs",)


def test_a_deployment_logging_off_but_with_a_sink_is_still_read() -> None:
    # sampleRate 0 stops new records; what the sink holds is still there to read.
    start = started(reconcile_dataset(live(), obs(logging_to(FILE_SINK, 0.0)), at(0)))
    assert read_sink(start) == FILE_SINK


def test_a_given_sink_wins_over_the_deployments_and_needs_no_deployment() -> None:
    ds = live(sink="s3://archive/iris")
    for md in (logging_to(FILE_SINK), None):
        assert read_sink(started(reconcile_dataset(ds, obs(md), at(0)))) == "s3://archive/iris"


@pytest.mark.parametrize(
    ("md", "reason", "words"),
    [
        (None, "LogsNotFound", "no ModelDeployment 'iris' in this namespace"),
        (logging_to(None), "LogsNotFound", "has no spec.logging.sink"),
        (logging_to("https://collector/logs"), "LogsUnreadable", "'https://collector/logs'"),
    ],
    ids=["missing", "no-logging", "http-collector"],
)
def test_an_unresolvable_sink_is_one_line_with_a_reason_and_looked_at_again(
    md: ModelDeployment | None, reason: str, words: str
) -> None:
    result = reconcile_dataset(live(), obs(md), at(0))
    assert not [a for a in result.actions if isinstance(a, StartRun)]
    assert result.status.phase == "Failed" and result.status.run is None
    condition = ready(result)
    assert condition.status == "False" and condition.reason == reason
    assert words in condition.message and "\n" not in condition.message
    assert "spec.source.inferenceLogs.sink" in condition.message  # the way out is named
    # Not stalled: it clears by itself, and is reconciled again soon.
    assert get(result.status.conditions, "Stalled") is None
    assert result.requeue_after == UNRESOLVED_POLL_SECONDS
    assert [e.reason for e in result.events] == [reason]
    # The same state again: no second event.
    again = reconcile_dataset(live().model_copy(update={"status": result.status}), obs(md), at(5))
    assert again.events == [] and ready(again).reason == reason


def test_the_dataset_recovers_when_the_deployment_appears_and_then_logs() -> None:
    ds = live()
    missing = reconcile_dataset(ds, obs(None), at(0))
    assert ready(missing).reason == "LogsNotFound"
    ds.status = missing.status
    no_logging = reconcile_dataset(ds, obs(logging_to(None)), at(5))
    assert "has no spec.logging.sink" in ready(no_logging).message
    ds.status = no_logging.status
    recovered = reconcile_dataset(ds, obs(logging_to(FILE_SINK)), at(10))
    assert read_sink(started(recovered)) == FILE_SINK
    assert recovered.status.phase == "Validating" and recovered.status.run is not None
    assert ready(recovered).reason == "Profiling"


def test_a_lost_run_asked_for_again_reads_the_sink_resolved_now() -> None:
    first = reconcile_dataset(live(), obs(logging_to(FILE_SINK)), at(0))
    ds = live().model_copy(update={"status": first.status})
    again = reconcile_dataset(ds, obs(logging_to("file:///moved")), at(5))
    assert started(again).name == first.status.run
    assert read_sink(started(again)) == "file:///moved"
    gone = reconcile_dataset(ds, obs(None), at(6))
    assert ready(gone).reason == "LogsNotFound" and not gone.actions
    ds.status = gone.status
    back = reconcile_dataset(ds, obs(logging_to(FILE_SINK)), at(12))
    assert started(back).name == first.status.run and read_sink(started(back)) == FILE_SINK


def test_a_profiled_snapshot_stands_when_the_deployment_goes_away() -> None:
    first = reconcile_dataset(live(), obs(logging_to(FILE_SINK)), at(0))
    ds = live().model_copy(update={"status": first.status})
    summary = {
        "rows": 30, "columns": 5, "fingerprint": "ab" * 32,
        "snapshot": {"uri": "file:///a/snapshot.parquet", "rows": 30, "sink": FILE_SINK},
    }  # fmt: skip
    run = RunState(first.status.run or "", "Succeeded", at(0), at(5), summary)
    done = reconcile_dataset(ds, obs(logging_to(FILE_SINK), run), at(6))
    assert done.status.phase == "Ready"
    assert done.status.snapshot is not None and done.status.snapshot.sink == FILE_SINK
    ds.status = done.status
    later = reconcile_dataset(ds, obs(None), at(60))
    assert later.status.phase == "Ready" and not later.actions


def test_a_new_generation_stops_the_old_run_even_while_unresolved() -> None:
    first = reconcile_dataset(live(), obs(logging_to(FILE_SINK)), at(0))
    ds = live(window="2h").model_copy(update={"status": first.status})
    ds.metadata.generation = 2
    running = RunState(first.status.run or "", "Running", at(0))
    result = reconcile_dataset(ds, obs(None, running), at(5))
    assert [type(a) for a in result.actions] == [DeleteRun]
    assert ready(result).reason == "LogsNotFound"


def test_the_observer_reads_the_named_deployment_only_when_the_sink_is_left_out() -> None:
    platform = FakePlatform()
    observer = Observer(platform)
    ds = live()
    assert observer.observe(ds).deployment is None  # type: ignore[union-attr]
    platform.put(logging_to(FILE_SINK))
    seen = observer.observe(ds)
    assert isinstance(seen, DatasetObservation) and seen.deployment is not None
    assert seen.deployment.name == "iris"
    given = observer.observe(live(sink="file:///kept"))
    assert isinstance(given, DatasetObservation) and given.deployment is None


def test_a_source_of_another_kind_depends_on_no_deployment() -> None:
    assert DataSource(uri="builtin://iris").inference_logs is None
    platform = FakePlatform()
    platform.put(logging_to(FILE_SINK))
    seen = Observer(platform).observe(dataset())
    assert isinstance(seen, DatasetObservation) and seen.deployment is None


def test_through_the_loop_the_dataset_starts_once_the_deployment_logs() -> None:
    platform = FakePlatform()
    platform.put(live())
    first = platform.reconcile("Dataset", "iris", 0)
    assert ready(first).reason == "LogsNotFound" and not platform.runs
    platform.put(logging_to(FILE_SINK))
    platform.reconcile("Dataset", "iris", first.requeue_after)
    ((_, run_name),) = platform.runs
    (start,) = [a for a in platform.actions if isinstance(a, StartRun)]
    assert start.name == run_name and read_sink(start) == FILE_SINK
