"""Dataset reconciler: validate the spec, profile the data in a run, report findings.

Level-triggered: the run wanted is a function of (generation, `pilotage.dev/refresh`
annotation); when `status.run` differs, a new profiling run starts (the old one, if
still running, is deleted). A finished run's summary becomes the status.

A source that depends on a ModelDeployment (`logs://NAME` without a sink) is resolved from
the observed deployment when a run starts: the run reads (and mounts) the resolved source.
While it cannot be resolved the Dataset is Failed with the source's reason, not stalled:
it is reconciled again soon and starts its run once the deployment is there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from pilotage import sources
from pilotage.api.dataset import (
    ColumnSummary,
    Dataset,
    DatasetSpec,
    DatasetStatus,
    DataSource,
    Finding,
    Snapshot,
)
from pilotage.control.common import (
    ANNOTATION_REFRESH,
    RUN_POLL_SECONDS,
    dns_name,
    format_time,
    join_uri,
    manifest,
    namespace_of,
    ready_reason,
    reconciled_conditions,
    short_hash,
)
from pilotage.control.types import (
    Action,
    DatasetObservation,
    DeleteRun,
    Event,
    Result,
    RunState,
    StartRun,
)


def spec_problem(spec: DatasetSpec) -> str | None:
    """What makes the spec unusable, naming the field; None when it is usable."""
    problem = sources.spec_problem(spec.source)
    if problem:
        return problem
    if spec.target is not None and spec.features and spec.target in spec.features:
        return f"spec.features: contains the target column {spec.target!r}"
    if spec.features and len(set(spec.features)) != len(spec.features):
        return "spec.features: a column is listed twice"
    if spec.schema_:
        names = [c.name for c in spec.schema_]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            return f"spec.schema: column {twice[0]!r} is described twice"
    return None


def wanted_run(ds: Dataset, request: str | None = None) -> str:
    """The run that profiles this generation (and refresh annotation, and a DriftMonitor's
    request for a fresh snapshot) of the Dataset."""
    refresh = ds.metadata.annotations.get(ANNOTATION_REFRESH)
    token = f"r{short_hash(refresh, 6)}" if refresh else ""
    if request:
        token += f"m{short_hash(request, 6)}"
    return dns_name(ds.name, "profile", f"g{ds.generation}", token)


def _start(ds: Dataset, run: str, obs: DatasetObservation, source: DataSource) -> StartRun:
    """The profiling run, reading ``source`` (the Dataset's, resolved)."""
    dataset_manifest = manifest(ds)
    dataset_manifest["spec"]["source"] = source.model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    return StartRun(
        name=run,
        purpose="profile",
        owner_kind="Dataset",
        owner_name=ds.name,
        manifests=[dataset_manifest],
        output_uri=join_uri(obs.artifact_uri, namespace_of(ds), "datasets", ds.name, run),
        data=(source,),
    )


def _reads(ds: Dataset, source: DataSource) -> str:
    """What a run reads, for its event: the URI, and a sink resolved from the deployment."""
    resolved = source.inference_logs.sink if source.inference_logs is not None else None
    given = ds.spec.source.inference_logs
    if resolved is not None and (given is None or given.sink is None):
        return f"{source.uri} (the deployment's sink {resolved})"
    return source.uri


def _apply_summary(status: DatasetStatus, result: Any, run: RunState, now: datetime) -> str:
    """Copy the run's summary into status; returns a problem message or ''."""
    if not isinstance(result, dict):
        return "the profiling run reported no summary"
    try:
        findings = [Finding.model_validate(f) for f in result.get("findings", [])]
        summary = [ColumnSummary.model_validate(c) for c in result.get("summary") or []]
        task = result.get("task")
        if task not in (None, "classification", "regression"):
            raise ValueError(f"task {task!r} is neither classification nor regression")
        target = result.get("target")
        snapshot = result.get("snapshot")
        status.snapshot = Snapshot.model_validate(snapshot) if snapshot is not None else None
        status.rows = int(result["rows"])
        status.columns = int(result["columns"])
        status.fingerprint = str(result["fingerprint"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        return f"the profiling run's summary is unreadable: {exc}"
    status.findings = findings[:200]
    status.summary = summary[:1000]
    status.task = task
    status.target = str(target)[:256] if target else None
    profile = result.get("profileUri")
    status.profile_uri = str(profile) if profile else None
    status.last_profiled_time = format_time(run.finished or now)
    return ""


def _error_summary(findings: list[Finding]) -> str:
    errors = [f for f in findings if f.severity == "error"]
    shown = "; ".join(
        f"{f.column or 'rows'}: {f.kind} ({f.count})" + (f" {f.message}" if f.message else "")
        for f in errors[:3]
    )
    more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    return f"validation failed: {shown}{more}"


def reconcile_dataset(ds: Dataset, obs: DatasetObservation, now: datetime) -> Result[DatasetStatus]:
    old = ds.status or DatasetStatus()
    status = old.model_copy(deep=True)
    generation = ds.generation
    stamp = format_time(now)
    status.observed_generation = generation
    actions: list[Action] = []
    events: list[Event] = []

    def finish(
        phase: str, ready: bool | None, reason: str, message: str, *, stalled: bool = False
    ) -> None:
        status.phase = phase  # type: ignore[assignment]
        status.conditions = reconciled_conditions(
            status.conditions,
            ready=ready,
            reason=reason,
            message=message,
            stalled=stalled,
            generation=generation,
            now=stamp,
        )

    problem = spec_problem(ds.spec)
    if problem:
        if obs.run is not None and obs.run.phase == "Running":
            actions.append(DeleteRun(obs.run.name))
        finish("Failed", False, "InvalidSpec", problem, stalled=True)
        if old.phase != "Failed" or ready_reason(old.conditions) != "InvalidSpec":
            events.append(Event("Warning", "InvalidSpec", problem))
        return Result(status, actions, events)

    source = sources.resolve(ds.spec.source, obs.deployment)

    def unresolved(found: sources.Unresolved) -> Result[DatasetStatus]:
        finish("Failed", False, found.reason, found.message)
        if old.phase != "Failed" or ready_reason(old.conditions) != found.reason:
            events.append(Event("Warning", found.reason, found.message))
        return Result(status, actions, events, UNRESOLVED_POLL_SECONDS)

    run_name = wanted_run(ds, obs.refresh)
    if status.run != run_name:
        status.refresh_request = obs.refresh
        if obs.run is not None and obs.run.phase == "Running":
            actions.append(DeleteRun(obs.run.name))
        if isinstance(source, sources.Unresolved):
            return unresolved(source)  # status.run stays: the run starts once resolved
        actions.append(_start(ds, run_name, obs, source))
        status.run = run_name
        finish("Validating", False, "Profiling", f"profiling run {run_name} started")
        events.append(
            Event("Normal", "ProfilingStarted", f"run {run_name} reads {_reads(ds, source)}")
        )
        return Result(status, actions, events, RUN_POLL_SECONDS)

    run = obs.run if obs.run is not None and obs.run.name == run_name else None
    if run is None:
        if old.phase == "Validating":
            # Started but not seen yet (or lost before it was created): ask again, idempotently.
            if isinstance(source, sources.Unresolved):
                status.run = None  # so that it is started once resolved
                return unresolved(source)
            actions.append(_start(ds, run_name, obs, source))
            finish("Validating", False, "Profiling", f"waiting for profiling run {run_name}")
            return Result(status, actions, events, RUN_POLL_SECONDS)
        # Finished earlier; the run may have been cleaned up since. The status stands. A
        # snapshot is looked at again soon: a DriftMonitor may ask for a fresh one.
        return Result(status, actions, events, _listening(ds))

    if run.phase == "Running":
        finish("Validating", False, "Profiling", f"profiling run {run_name} in progress")
        return Result(status, actions, events, RUN_POLL_SECONDS)

    if run.phase == "Failed":
        message = f"profiling run {run_name} failed: {run.message or 'no message'}"
        finish("Failed", False, "ProfilingFailed", message, stalled=True)
        if old.phase != "Failed":
            events.append(Event("Warning", "ProfilingFailed", message))
        return Result(status, actions, events, _listening(ds))

    problem = _apply_summary(status, run.result, run, now)
    if problem:
        finish("Failed", False, "RunResultInvalid", problem, stalled=True)
        if old.phase != "Failed":
            events.append(Event("Warning", "RunResultInvalid", problem))
        return Result(status, actions, events)
    if any(f.severity == "error" for f in status.findings):
        message = _error_summary(status.findings)
        finish("Failed", False, "ValidationFailed", message, stalled=True)
        if old.phase != "Failed":
            events.append(Event("Warning", "ValidationFailed", message))
        return Result(status, actions, events)

    warnings = len(status.findings)
    message = f"{status.rows} rows, {status.columns} columns, {warnings} finding(s)"
    finish("Ready", True, "Profiled", message)
    if old.phase != "Ready" or old.fingerprint != status.fingerprint:
        events.append(
            Event("Normal", "Profiled", f"{message}; fingerprint {(status.fingerprint or '')[:12]}")
        )
    return Result(status, actions, events, _listening(ds))


UNRESOLVED_POLL_SECONDS = 5.0
"""How soon a Dataset whose source cannot be resolved yet (its ModelDeployment is missing or
logs nowhere readable) looks again: it recovers by itself within this."""

SNAPSHOT_POLL_SECONDS = 10.0
"""How often a Dataset read as a snapshot looks for a DriftMonitor's request of a fresh one."""


def _listening(ds: Dataset) -> float | None:
    return SNAPSHOT_POLL_SECONDS if sources.snapshots(ds.spec.source) else None
