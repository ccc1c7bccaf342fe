"""TrainingJob reconciler: one generation of the spec is trained at most once.

A run is named after (job, generation, attempt), so starting it is idempotent.
`status.runGeneration` records which generation the runs train: once that
generation has Succeeded or Failed nothing is started again until the spec changes.
Gates are judged here from the run's metrics and the spec's gates, so the control
plane, not the trainer, decides what is deployable.
"""

from __future__ import annotations

import difflib
import math
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from pilotage import sources
from pilotage.api.dataset import Dataset, DataSource, Snapshot
from pilotage.api.trainingjob import (
    ALGORITHM_PARAMETERS,
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    ChampionResult,
    GateResult,
    GatesStatus,
    OnnxParity,
    SearchResult,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
)
from pilotage.control.common import (
    RUN_POLL_SECONDS,
    dns_name,
    format_time,
    join_uri,
    manifest,
    namespace_of,
    parse_time,
    ready_reason,
    reconciled_conditions,
    seconds_between,
)
from pilotage.control.types import (
    Action,
    DeleteRun,
    Event,
    Result,
    RunState,
    StartRun,
    TrainingJobObservation,
)

PARITY_LIMIT = 1e-4
# The trainer's exit status for usage and manifest errors (pilotage.trainer.cli.EXIT_USAGE).
EXIT_SPEC_ERROR = 2
HEADLINE_METRICS = ("accuracy", "f1", "r2", "rmse", "mae")


class _Finish(Protocol):
    """Sets the phase, message and conditions of the status being reconciled."""

    def __call__(
        self, phase: str, ready: bool | None, reason: str, message: str, *, stalled: bool = False
    ) -> None: ...


def _unknown_names(names: list[str], known: frozenset[str]) -> str | None:
    unknown = sorted(n for n in names if n not in known)
    if not unknown:
        return None
    shown = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        shown.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return ", ".join(shown)


def _grid_size(values: dict[str, list[Any]]) -> int:
    size = 1
    for candidates in values.values():
        size *= len(candidates)
    return size


def spec_problem(
    spec: TrainingJobSpec, inferred_task: str | None = None, dataset: str = ""
) -> str | None:
    """What makes the spec unusable, naming the field; None when it is usable.

    `inferred_task` is the task the Dataset's profile infers from the target (used when
    `spec.task` is absent): everything that depends on the task is checked only when
    one of them is known, so a run never starts only to fail on what is known now.
    """
    task = spec.task or inferred_task
    why = (
        f" (the task is inferred from Dataset {dataset}'s target; set spec.task to change it)"
        if spec.task is None and task is not None
        else ""
    )
    algorithm = spec.model.algorithm
    by_task = ALGORITHM_PARAMETERS.get(algorithm, {})
    if task is not None and by_task and task not in by_task:
        fitting = sorted(a for a, tasks in ALGORITHM_PARAMETERS.items() if task in tasks)
        return (
            f"spec.model.algorithm: {algorithm} does not do {task}; "
            f"for {task} use one of {', '.join(fitting)}{why}"
        )
    known: frozenset[str] = (
        by_task[task]
        if task is not None and task in by_task
        else frozenset().union(*by_task.values())
    )
    if known:
        unknown = _unknown_names(list(spec.model.hyperparameters), known)
        if unknown:
            return f"spec.model.hyperparameters: {unknown} is not a parameter of {algorithm}"
    search = spec.search
    if search is not None:
        if not search.parameters:
            return "spec.search.parameters is empty: name at least one hyperparameter"
        unknown = _unknown_names(list(search.parameters), known) if known else None
        if unknown:
            return f"spec.search.parameters: {unknown} is not a parameter of {algorithm}"
        empty = sorted(p for p, values in search.parameters.items() if not values)
        if empty:
            return f"spec.search.parameters: {', '.join(empty)} has no candidate values"
        size = _grid_size(search.parameters)
        if search.type == "grid" and size > search.max_trials:
            return (
                f"spec.search: the grid has {size} combinations, more than "
                f"maxTrials={search.max_trials}; raise maxTrials or use type: random"
            )
    if task is None:
        return None
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    for i, metric in enumerate(spec.evaluation.metrics):
        if metric not in allowed:
            return f"spec.evaluation.metrics[{i}]: {metric} is not a {task} metric{why}"
    for i, gate in enumerate(spec.evaluation.gates):
        if gate.metric not in allowed:
            return f"spec.evaluation.gates[{i}].metric: {gate.metric} is not a {task} metric{why}"
    if search and search.metric and search.metric not in allowed:
        return f"spec.search.metric: {search.metric} is not a {task} metric{why}"
    return None


def output_uri(tj: TrainingJob, default_base: str) -> str:
    """`<spec.output.uri or default>/<namespace>/<name>/<version>`."""
    base = tj.spec.output.uri or default_base
    return join_uri(base, namespace_of(tj), tj.name, tj.version)


def run_name(tj: TrainingJob, attempt: int) -> str:
    return dns_name(tj.name, f"g{tj.generation}", f"a{attempt}")


def judge_gates(tj: TrainingJob, metrics: dict[str, float]) -> GatesStatus:
    results = []
    for gate in tj.spec.evaluation.gates:
        value = metrics.get(gate.metric)
        passed = value is not None and math.isfinite(value)
        if passed and value is not None:
            passed = (gate.min is None or value >= gate.min) and (
                gate.max is None or value <= gate.max
            )
        results.append(
            GateResult(metric=gate.metric, value=value, min=gate.min, max=gate.max, passed=passed)
        )
    return GatesStatus(passed=all(r.passed for r in results), results=results)


LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "log_loss"})
"""Metrics where a smaller value is the better model."""


def compared_metrics(tj: TrainingJob) -> list[str]:
    """What a champion is compared on: the gate metrics, else the task's headline metric."""
    gated: list[str] = list(dict.fromkeys(g.metric for g in tj.spec.evaluation.gates))
    if gated:
        return gated
    return ["r2"] if tj.spec.task == "regression" else ["accuracy", "r2"]


def judge_champion(
    tj: TrainingJob, metrics: dict[str, float], scored: Any
) -> ChampionResult | None:
    """The new model against `spec.evaluation.champion`: at least as good on every compared
    metric, within the margin. Unknown (passed None) when the champion was not scored."""
    champion = tj.spec.evaluation.champion
    if champion is None:
        return None
    result = ChampionResult(uri=champion.uri, version=champion.version, margin=champion.margin)
    who = f"stable version {champion.version}" if champion.version else "the champion"
    if not isinstance(scored, dict) or not isinstance(scored.get("metrics"), dict):
        why = scored.get("error") if isinstance(scored, dict) else None
        result.message = f"{who} not scored ({why or 'no scores reported'}); gates alone judge"
        return result
    theirs = {
        str(k): float(v)
        for k, v in scored["metrics"].items()
        if isinstance(v, int | float) and math.isfinite(v)
    }
    result.metrics = theirs
    names = [m for m in compared_metrics(tj) if m in theirs and m in metrics]
    if not names:
        result.message = f"{who} shares no compared metric with the new model; gates alone judge"
        return result
    worse: list[str] = []
    shown: list[str] = []
    for name in names:
        ours, their = metrics[name], theirs[name]
        lower = name in LOWER_IS_BETTER
        ok = ours <= their + champion.margin if lower else ours >= their - champion.margin
        shown.append(f"{name} {ours:.4g} vs {their:.4g}")
        if not ok:
            worse.append(f"{name} {ours:.4g} {'>' if lower else '<'} {who}'s {their:.4g}")
    margin = f" (margin {champion.margin:g})" if champion.margin else ""
    result.passed = not worse
    result.message = (
        f"{'; '.join(worse)}{margin} on the same test rows"
        if worse
        else f"at least as good as {who}{margin}: {', '.join(shown)}"
    )[:1024]
    return result


def _gate_text(result: GateResult) -> str:
    shown = "missing" if result.value is None else f"{result.value:.4g}"
    bounds = []
    if result.min is not None:
        bounds.append(f">= {result.min:g}")
    if result.max is not None:
        bounds.append(f"<= {result.max:g}")
    return f"{result.metric} {shown} (needs {' and '.join(bounds)})"


def _metrics_text(metrics: dict[str, float], wanted: list[str]) -> str:
    """The first two metrics the user listed (in their order), else the headline ones."""
    order = list(wanted) or list(HEADLINE_METRICS)
    shown = [f"{m} {metrics[m]:.4g}" for m in order if m in metrics]
    return ", ".join(shown[:2])


def _start(
    tj: TrainingJob,
    dataset: Dataset,
    attempt: int,
    obs: TrainingJobObservation,
    now: datetime,
    started: datetime | None,
    recorded: Snapshot | None = None,
) -> StartRun:
    """The run of one attempt. Retries pass the snapshot the first attempt recorded: the
    Dataset may have been profiled again since (a DriftMonitor refreshing a `logs://`
    window), and the model must learn from the data `status.datasetSnapshot` names."""
    deadline: float | None = None
    if tj.spec.active_deadline_seconds is not None:
        spent = seconds_between(started, now) if started else 0.0
        deadline = max(1.0, tj.spec.active_deadline_seconds - spent)
    data = data_of(dataset, recorded)
    dataset_manifest = manifest(dataset)
    dataset_manifest["spec"]["source"] = data.model_dump(by_alias=True, exclude_none=True)
    if data is not dataset.spec.source and dataset.spec.target is None:
        # A snapshot is a plain Parquet file: the source's default target goes with it.
        target = sources.source_for(dataset.spec.source.uri).default_target
        if target is not None:
            dataset_manifest["spec"]["target"] = target
    return StartRun(
        name=run_name(tj, attempt),
        purpose="train",
        owner_kind="TrainingJob",
        owner_name=tj.name,
        manifests=[dataset_manifest, manifest(tj)],
        output_uri=output_uri(tj, obs.artifact_uri),
        deadline_seconds=deadline,
        resources=tj.spec.resources.dump(),
        data=(data,),
    )


def data_of(dataset: Dataset, recorded: Snapshot | None = None) -> DataSource:
    """What a run trains on: the ``recorded`` snapshot, else the Dataset's snapshot when
    its profile materialised one (a `logs://` window: the Parquet file in the artifact
    store), else its source."""
    snapshot = recorded or (dataset.status.snapshot if dataset.status is not None else None)
    if snapshot is None:
        return dataset.spec.source
    return DataSource(uri=snapshot.uri, format="parquet")


def _read_summary(result: Any) -> tuple[dict[str, float], OnnxParity | None, dict[str, Any]]:
    if not isinstance(result, dict):
        raise ValueError("the training run reported no summary")
    metrics_raw = result.get("metrics", {})
    if not isinstance(metrics_raw, dict):
        raise ValueError("metrics is not a mapping")
    metrics = {str(k): float(v) for k, v in metrics_raw.items() if v is not None}
    parity_raw = result.get("onnxParity")
    parity = OnnxParity.model_validate(parity_raw) if parity_raw is not None else None
    return metrics, parity, result


def _search_of(summary: dict[str, Any]) -> SearchResult | None:
    """The search's outcome from the run's summary (None without a search, or unreadable:
    it is informative, and the model stands without it)."""
    raw = summary.get("search")
    if not isinstance(raw, dict):
        return None
    try:
        return SearchResult.model_validate(raw)
    except ValidationError:
        return None


def reconcile_trainingjob(
    tj: TrainingJob, obs: TrainingJobObservation, now: datetime
) -> Result[TrainingJobStatus]:
    old = tj.status or TrainingJobStatus()
    status = old.model_copy(deep=True)
    generation = tj.generation
    stamp = format_time(now)
    status.observed_generation = generation
    actions: list[Action] = []
    events: list[Event] = []

    def finish(
        phase: str, ready: bool | None, reason: str, message: str, *, stalled: bool = False
    ) -> None:
        status.phase = phase  # type: ignore[assignment]
        status.message = message[:1024]
        status.conditions = reconciled_conditions(
            status.conditions,
            ready=ready,
            reason=reason,
            message=message,
            stalled=stalled,
            generation=generation,
            now=stamp,
        )

    problem = spec_problem(tj.spec)
    if problem:
        if obs.run is not None and obs.run.phase == "Running":
            actions.append(DeleteRun(obs.run.name))
        finish("Failed", False, "InvalidSpec", problem, stalled=True)
        if ready_reason(old.conditions) != "InvalidSpec":
            events.append(Event("Warning", "InvalidSpec", problem))
        return Result(status, actions, events)

    if status.run_generation is not None and status.run_generation != generation:
        # The spec changed: what the old generation produced no longer describes this job.
        if obs.run is not None and obs.run.phase == "Running":
            actions.append(DeleteRun(obs.run.name))
        status = TrainingJobStatus(observed_generation=generation, conditions=status.conditions)

    if status.run_generation == generation and status.phase in ("Succeeded", "Failed"):
        return Result(status, actions, events)  # this generation is done, never train it again

    if status.run_generation != generation:
        dataset = obs.dataset
        if dataset is None:
            finish(
                "Pending",
                False,
                "DatasetNotFound",
                f"waiting for Dataset {tj.spec.dataset_ref.name}",
            )
            return Result(status, actions, events, RUN_POLL_SECONDS)
        ds_status = dataset.status
        if (
            ds_status is None
            or ds_status.phase != "Ready"
            or (ds_status.observed_generation != dataset.generation)
        ):
            phase = ds_status.phase if ds_status else "Pending"
            finish(
                "Pending",
                False,
                "WaitingForDataset",
                f"waiting for Dataset {dataset.name} to be Ready (it is {phase})",
            )
            return Result(status, actions, events, RUN_POLL_SECONDS)
        problem = spec_problem(tj.spec, ds_status.task, dataset.name)
        if problem:
            finish("Failed", False, "InvalidSpec", problem, stalled=True)
            if ready_reason(old.conditions) != "InvalidSpec":
                events.append(Event("Warning", "InvalidSpec", problem))
            return Result(status, actions, events)
        start = _start(tj, dataset, 1, obs, now, None)
        actions.append(start)
        status.run = start.name
        status.run_generation = generation
        status.attempts = 1
        status.start_time = stamp
        status.completion_time = None
        status.dataset_fingerprint = ds_status.fingerprint
        status.dataset_snapshot = ds_status.snapshot
        limit = tj.spec.backoff_limit + 1
        finish("Running", False, "Training", f"attempt 1 of {limit} running as {start.name}")
        events.append(
            Event(
                "Normal",
                "TrainingStarted",
                f"run {start.name} trains {tj.spec.model.algorithm} on Dataset "
                f"{dataset.name} (fingerprint {(ds_status.fingerprint or '?')[:12]})",
            )
        )
        return Result(status, actions, events, RUN_POLL_SECONDS)

    # A run of this generation is in progress (phase Running).
    started = parse_time(status.start_time)
    deadline = tj.spec.active_deadline_seconds
    run = obs.run if obs.run is not None and obs.run.name == status.run else None
    if deadline is not None and started is not None and seconds_between(started, now) >= deadline:
        if status.run:
            actions.append(DeleteRun(status.run))
        message = f"activeDeadlineSeconds ({deadline}s) exceeded after {status.attempts} attempt(s)"
        status.completion_time = stamp
        finish("Failed", False, "DeadlineExceeded", message, stalled=True)
        events.append(Event("Warning", "DeadlineExceeded", message))
        return Result(status, actions, events)

    if run is None or run.phase == "Running":
        if run is None and obs.dataset is not None:
            # Not seen yet (or lost before it was created): ask again, idempotently.
            actions.append(
                _start(tj, obs.dataset, status.attempts, obs, now, started, status.dataset_snapshot)
            )
        finish(
            "Running",
            False,
            "Training",
            f"attempt {status.attempts} of {tj.spec.backoff_limit + 1} running as {status.run}",
        )
        requeue = RUN_POLL_SECONDS
        if deadline is not None and started is not None:
            requeue = min(requeue, max(0.1, deadline - seconds_between(started, now)))
        return Result(status, actions, events, requeue)

    if run.phase == "Failed":
        return _after_failure(tj, obs, status, run, now, actions, events, finish)
    return _after_success(tj, status, run, now, actions, events, finish)


def _after_failure(
    tj: TrainingJob,
    obs: TrainingJobObservation,
    status: TrainingJobStatus,
    run: RunState,
    now: datetime,
    actions: list[Action],
    events: list[Event],
    finish: _Finish,
) -> Result[TrainingJobStatus]:
    limit = tj.spec.backoff_limit + 1
    retryable = not (
        (isinstance(run.result, dict) and run.result.get("retryable") is False)
        or run.exit_code == EXIT_SPEC_ERROR
    )
    reason = run.message or "no message"
    if retryable and status.attempts < limit and obs.dataset is not None:
        attempt = status.attempts + 1
        start = _start(
            tj,
            obs.dataset,
            attempt,
            obs,
            now,
            parse_time(status.start_time),
            status.dataset_snapshot,
        )
        actions.append(start)
        status.run = start.name
        status.attempts = attempt
        finish(
            "Running", False, "Training", f"attempt {attempt} of {limit} running as {start.name}"
        )
        events.append(
            Event(
                "Warning",
                "TrainingRetry",
                f"attempt {attempt - 1} failed: {reason}; retrying ({attempt} of {limit})",
            )
        )
        return Result(status, actions, events, RUN_POLL_SECONDS)
    status.completion_time = format_time(run.finished or now)
    if not retryable:
        # The trainer found the spec unusable with this data: no attempt can do better.
        message = f"attempt {status.attempts} found the spec unusable (not retried): {reason}"
        finish("Failed", False, "InvalidSpec", message, stalled=True)
        events.append(Event("Warning", "InvalidSpec", message))
        return Result(status, actions, events)
    message = f"attempt {status.attempts} of {limit} failed: {reason}"
    finish("Failed", False, "BackoffLimitExceeded", message, stalled=True)
    events.append(Event("Warning", "TrainingFailed", message))
    return Result(status, actions, events)


def _after_success(
    tj: TrainingJob,
    status: TrainingJobStatus,
    run: RunState,
    now: datetime,
    actions: list[Action],
    events: list[Event],
    finish: _Finish,
) -> Result[TrainingJobStatus]:
    status.completion_time = format_time(run.finished or now)
    try:
        metrics, parity, summary = _read_summary(run.result)
    except (TypeError, ValueError, ValidationError) as exc:
        message = f"run {run.name} succeeded but its summary is unreadable: {exc}"
        finish("Failed", False, "RunResultInvalid", message, stalled=True)
        events.append(Event("Warning", "RunResultInvalid", message))
        return Result(status, actions, events)
    if parity is not None and not parity.max_abs_diff <= PARITY_LIMIT:
        status.onnx_parity = parity
        message = (
            f"ONNX parity failed: max |sklearn - onnxruntime| = {parity.max_abs_diff:.3g} "
            f"> {PARITY_LIMIT:g}"
        )
        finish("Failed", False, "ParityFailed", message, stalled=True)
        events.append(Event("Warning", "ParityFailed", message))
        return Result(status, actions, events)
    status.model_version = str(summary.get("modelVersion") or tj.version)[:63]
    status.model_uri = str(summary.get("modelUri") or "") or None
    status.metrics = metrics
    status.onnx_parity = parity
    status.gates = judge_gates(tj, metrics)
    status.champion = judge_champion(tj, metrics, summary.get("champion"))
    if status.champion is not None and status.champion.passed is False:
        status.gates = GatesStatus(passed=False, results=status.gates.results)
    status.search = _search_of(summary)
    task = summary.get("task")
    status.task = task if task in ("classification", "regression") else tj.spec.task
    if summary.get("datasetFingerprint"):
        status.dataset_fingerprint = str(summary["datasetFingerprint"])[:80]
    if status.model_uri is None:
        message = f"run {run.name} succeeded but reported no modelUri"
        status.model_version = None
        finish("Failed", False, "RunResultInvalid", message, stalled=True)
        events.append(Event("Warning", "RunResultInvalid", message))
        return Result(status, actions, events)
    shown = _metrics_text(metrics, list(tj.spec.evaluation.metrics))
    if status.champion is not None and status.champion.passed is False:
        message = (
            f"version {status.model_version} trained but rejected: {status.champion.message}"
        )[:1024]
        finish("Succeeded", False, "ChampionBetter", message, stalled=True)
        events.append(Event("Warning", "ChallengerRejected", message))
        return Result(status, actions, events)
    if not status.gates.passed:
        failed = [_gate_text(r) for r in status.gates.results if not r.passed]
        message = f"version {status.model_version} trained but gates failed: {'; '.join(failed)}"
        finish("Succeeded", False, "GatesFailed", message, stalled=True)
        events.append(Event("Warning", "GatesFailed", message))
        return Result(status, actions, events)
    message = f"version {status.model_version} ready" + (f": {shown}" if shown else "")
    finish("Succeeded", True, "Succeeded", message)
    events.append(Event("Normal", "TrainingSucceeded", f"{message} at {status.model_uri}"))
    return Result(status, actions, events)
