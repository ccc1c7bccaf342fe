"""The vocabulary between the pure reconcilers and the two shells (operator, local runtime).

A shell *observes* the world into one of the ``*Observation`` records, calls
``reconcile_<kind>(resource, observation, now)`` and gets a ``Result``: the new
status to write, the ``Action`` list to carry out (each one idempotent, keyed by
name), the ``Event`` list to record, and when to call again.

Everything here is plain, immutable data. Times are timezone-aware ``datetime``;
counters are cumulative (like Prometheus counters): the reconcilers take
differences against a checkpoint they keep in status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pilotage.api.dataset import Dataset, DataSource, Snapshot
from pilotage.api.modelcard import Baseline
from pilotage.api.modeldeployment import ModelDeployment

# The wire documents' plain data, part of this vocabulary (re-exported).
from pilotage.wire.router_stats import FeedbackStats as FeedbackStats
from pilotage.wire.router_stats import LogCounters as LogCounters
from pilotage.wire.router_stats import RouterStats as RouterStats
from pilotage.wire.router_stats import ShadowStats as ShadowStats
from pilotage.wire.router_stats import VariantStats as VariantStats
from pilotage.wire.routes import Activation as Activation
from pilotage.wire.routes import RouteLogging as RouteLogging
from pilotage.wire.routes import RouteMode as RouteMode
from pilotage.wire.routes import RouteTable as RouteTable
from pilotage.wire.routes import RouteVariant as RouteVariant
from pilotage.wire.routes import ShadowRoute as ShadowRoute
from pilotage.wire.routes import VariantRole as VariantRole
from pilotage.wire.routes import url_fields as url_fields

# ---------------------------------------------------------------------------
# Actions: what a shell must do. Each is idempotent: doing it twice is harmless.
# ---------------------------------------------------------------------------

RunPurpose = Literal["profile", "train"]


@dataclass(frozen=True)
class StartRun:
    """Start a trainer run unless one with this name exists (create-if-absent).

    The run executes ``pilotage train -f <manifests>`` (a Job on Kubernetes, a process
    locally) and reports its JSON summary back (termination message / result file);
    the shell puts that summary in ``RunState.result``.
    """

    name: str
    purpose: RunPurpose
    owner_kind: str
    owner_name: str
    manifests: list[dict[str, Any]]
    """The Dataset (and, for `train`, the TrainingJob) manifests the trainer reads."""
    output_uri: str
    """Where the run writes its artifacts: the model directory (train) or the profile (profile)."""
    deadline_seconds: float | None = None
    """Wall-clock limit of this attempt (the Job's activeDeadlineSeconds)."""
    resources: dict[str, Any] = field(default_factory=dict)
    """Kubernetes-style `{requests: {...}, limits: {...}}` for the run's container."""
    data: tuple[DataSource, ...] = ()
    """The data sources the run reads: the shell gives it what they need to be read
    (pilotage.sources' `Access`: claims, the S3 store, their own credentials Secret)."""


@dataclass(frozen=True)
class DeleteRun:
    """Stop and remove a run (and its pod/process). Missing runs are fine."""

    name: str


@dataclass(frozen=True)
class ServerSettings:
    threads: int = 1
    max_batch_size: int = 1
    max_batch_wait_us: int = 500
    resources: dict[str, Any] = field(default_factory=dict)
    strict_schema: bool = False


@dataclass(frozen=True)
class EnsureServer:
    """Run `replicas` model servers for (deployment, version) serving `model_uri`.

    Servers are keyed by (deployment, version), never by role: promoting a canary to
    stable changes only the routing table, never restarts a server.
    """

    deployment: str
    version: str
    model_uri: str
    replicas: int
    settings: ServerSettings = field(default_factory=ServerSettings)


@dataclass(frozen=True)
class RemoveServer:
    """Stop the servers of (deployment, version). Missing servers are fine."""

    deployment: str
    version: str


@dataclass(frozen=True)
class EnsureRouter:
    """Run the deployment's router (`replicas` of it) and expose its endpoint."""

    deployment: str
    replicas: int
    resources: dict[str, Any] = field(default_factory=dict)
    variant_token_secret: str | None = None  # Secret (key `token`) that allows forcing
    feedback_token_secret: str | None = None  # Secret (key `token`) public feedback needs
    log_sink: str | None = None  # inference-log sink URI: a pvc:// claim to mount, s3:// env


@dataclass(frozen=True)
class SetRoutes:
    """Make the deployment's router use this table (no restart, no dropped request)."""

    deployment: str
    table: RouteTable


@dataclass(frozen=True)
class CreateTrainingJob:
    """Create this TrainingJob (create-if-absent by `metadata.name`) owned by the owner."""

    manifest: dict[str, Any]
    owner_kind: str
    owner_name: str


Action = (
    StartRun
    | DeleteRun
    | EnsureServer
    | RemoveServer
    | EnsureRouter
    | SetRoutes
    | CreateTrainingJob
)

# ---------------------------------------------------------------------------
# Events: every transition a person cares about.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


S = TypeVar("S")


@dataclass(frozen=True)
class Result(Generic[S]):
    """What a reconciler returns: the status to write, then actions, events and when to
    call again (seconds; None = only on the next change)."""

    status: S
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


# ---------------------------------------------------------------------------
# Observations: what a shell saw, right before calling a reconciler.
# ---------------------------------------------------------------------------

RunPhase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class RunState:
    """A trainer run as the platform sees it (a Job + its pod; a local process).

    `result` is the trainer's JSON summary (keys are the owner's status field names in
    camelCase, e.g. `rows`, `fingerprint`, `modelVersion`, `metrics`, `gates`); it may
    also be present on failure (with `message`, optionally `"retryable": false`).
    `exit_code` is the trainer's exit status when known: 2 (usage or manifest error,
    a spec that cannot work with the data) is never retried.
    """

    name: str
    phase: RunPhase
    started: datetime | None = None
    finished: datetime | None = None
    result: Mapping[str, Any] | None = None
    message: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class DatasetObservation:
    run: RunState | None
    """The run named in `status.run` (None when there is none or it vanished)."""
    artifact_uri: str
    """The shell's default artifact store base URI (profiles go under it)."""
    refresh: str | None = None
    """The newest fresh snapshot a DriftMonitor asked for before a retrain (its
    `status.snapshotRequest`), for a Dataset read as a snapshot."""
    deployment: ModelDeployment | None = None
    """The ModelDeployment the Dataset's source depends on (`logs://NAME` without a sink:
    its logging sink), None when it does not exist or the source depends on none."""


@dataclass(frozen=True)
class TrainingJobObservation:
    dataset: Dataset | None
    """The Dataset named by `spec.datasetRef` (None when it does not exist)."""
    run: RunState | None
    """The run named in `status.run` (None when there is none or it vanished)."""
    artifact_uri: str
    """Default output base URI when `spec.output.uri` is absent."""


@dataclass(frozen=True)
class TrainingJobInfo:
    """What a ModelDeployment / DriftMonitor needs to know of a TrainingJob."""

    name: str
    labels: Mapping[str, str]
    created: datetime | None
    phase: str
    model_version: str | None = None
    model_uri: str | None = None
    gates_passed: bool | None = None
    dataset_fingerprint: str | None = None
    owner_kind: str | None = None
    owner_name: str | None = None


@dataclass(frozen=True)
class ServerState:
    version: str
    ready: bool
    message: str = ""
    failing: bool = False
    """The version's server cannot start: it exits again each time it is restarted (a
    crash loop; on Kubernetes a pod in CrashLoopBackOff). ``message`` says why."""
    restarts: int = 0
    ready_replicas: int | None = None
    """Replicas that answer their readiness probe (None: the shell did not count them)."""


@dataclass(frozen=True)
class TableRejection:
    """The router refused a routing table the shell gave it: which one and why."""

    revision: str | None
    """The refused table's revision (None when the shell cannot tell)."""
    reason: str
    """The router's own words (its 400 answer, or its reload error)."""


@dataclass(frozen=True)
class RouterState:
    ready: bool
    endpoint: str | None = None
    stats: RouterStats | None = None
    rejection: TableRejection | None = None
    """The last table the router refused, when the shell knows it is not in use."""
    endpoint_problem: str | None = None
    """Why the endpoint is not the one the router had before (its port was taken while
    it was down); None when it kept it."""


@dataclass(frozen=True)
class DriftSignal:
    """A DriftMonitor's verdict on this deployment, built with `control.drift_signal`."""

    monitor: str
    score: float | None
    """Share of drifted features (0..1): the value a `drift.maxScore` SLO is compared to."""
    drifting: bool
    """The monitor is Drifting and its `consecutive` hysteresis is reached."""
    rollback: bool
    """`drifting` and the monitor's `onDrift.rollback` is on: roll a candidate back."""
    since: datetime | None = None
    """When the current drifting streak began. Drift that began before a rollout started
    does not count against that rollout's candidate (it is what a retrain answers)."""
    message: str = ""
    version: str | None = None
    """The model version the monitor judged. A deployment counts the signal only while
    this is its stable version: a verdict on an earlier version is stale."""


@dataclass(frozen=True)
class LoadSample:
    """One read of a variant's cumulative router counters, for the autoscaler.

    ``requests`` and ``busy_seconds`` only grow while the router runs (a router restart
    starts them again from zero; the autoscaler ignores the samples before a drop).
    """

    time: datetime
    requests: int
    """Requests the variant answered, cumulative."""
    busy_seconds: float
    """Integral of the variant's requests in flight over time, cumulative (seconds)."""
    in_flight: int = 0
    """Requests in progress now."""
    held: int = 0
    """Requests waiting now in the router for a replica (the variant is at zero)."""
    clock: float | None = None
    """The router's uptime when it read these counters: rates are taken over its clock
    when both samples have one (the shell's read can lag by a varying delay)."""


@dataclass(frozen=True)
class ModelDeploymentObservation:
    training_jobs: tuple[TrainingJobInfo, ...] = ()
    """TrainingJobs `spec.model` may refer to (the namespace's, or at least the matches)."""
    servers: tuple[ServerState, ...] = ()
    """Servers of this deployment that exist, by version."""
    router: RouterState | None = None
    drift: DriftSignal | None = None
    model_card_version: str | None = None
    """For `spec.model.uri`: the version in its model.json, when the shell read it
    (otherwise the URI's last path segment is the version)."""
    load: Mapping[tuple[str, str], tuple[LoadSample, ...]] = field(default_factory=dict)
    """(variant, version) → recent samples of its router counters, oldest first (with
    `spec.autoscaling`; the shell keeps them, see `pilotage.control.autoscale.LoadHistory`)."""


RowValue = float | str | None


@dataclass(frozen=True)
class RecentRows:
    """A server's reservoir: its most recent rows, oldest first (`reservoir` in
    `GET /v1/models/{name}/drift`). Numbers as floats, categories as strings, None for null."""

    columns: tuple[str, ...]
    rows: tuple[tuple[RowValue, ...], ...]


@dataclass(frozen=True)
class ServerCounters:
    """One server process's cumulative drift counters (see `pilotage.drift.window`)."""

    features: Mapping[str, Mapping[str, int]]
    """feature → bin label → count."""
    predictions: Mapping[str, int]
    """class or bin label → count."""
    rows: int
    replica: str = ""
    """Which process these counts come from (pod name); counters are diffed per replica."""
    reservoir: RecentRows | None = None
    """The replica's recent rows, for exact KS/Wasserstein against the model card's
    training sample; None (bins only) when the shell did not read them."""
    out_of_schema: Mapping[str, int] = field(default_factory=dict)
    """feature → values seen outside the Dataset schema (cumulative)."""


@dataclass(frozen=True)
class DriftMonitorObservation:
    deployment: ModelDeployment | None
    """The ModelDeployment named by `spec.deploymentRef`."""
    version: str | None = None
    """The model version whose inputs are counted (the deployment's stable)."""
    baseline: Baseline | None = None
    """That version's model-card baseline profile."""
    counters: tuple[ServerCounters, ...] = ()
    """Cumulative counters of every server replica of that version."""
    feedback: FeedbackStats | None = None
    """Cumulative live feedback counters of the stable variant from the router."""
    dataset_fingerprint: str | None = None
    """Fingerprint of the Dataset the retrain template trains on."""
    stable_fingerprint: str | None = None
    """Fingerprint of the data the stable version learned from (its model card's)."""
    dataset_snapshots: bool = False
    """Whether the template's Dataset is read through a snapshot (a `logs://` Dataset)."""
    dataset_snapshot: Snapshot | None = None
    """Its latest snapshot (None before the first, or for other sources)."""
    dataset_answered: str | None = None
    """The snapshot request the Dataset's finished profile answers (None while profiling)."""
    dataset_failed: str | None = None
    """Why the Dataset's last profile failed, when it did."""
    retrain_jobs: tuple[TrainingJobInfo, ...] = ()
    """TrainingJobs this monitor created (label `pilotage.dev/monitor=<name>`)."""
