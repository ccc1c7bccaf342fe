"""ModelDeployment: a served model and how new versions reach traffic."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic.alias_generators import to_snake

from pilotage.api.common import (
    ApiModel,
    Condition,
    Duration,
    LabelSelector,
    LocalObjectReference,
    ResourceRequirements,
    ShortText,
    Timestamp,
    cel_rules,
    conditions_field,
    parse_duration,
)
from pilotage.api.resource import PrinterColumn, Resource, age_column

Weight = Annotated[int, Field(ge=0, le=100)]
VariantName = Literal["stable", "canary", "preview", "shadow"]


class ModelSource(ApiModel):
    """Which model version is wanted: exactly one of the three fields."""

    model_config = cel_rules(
        (
            "[has(self.trainingJobRef), has(self.uri), has(self.trainingJobSelector)]"
            ".filter(x, x).size() == 1",
            "exactly one of trainingJobRef, uri or trainingJobSelector must be set",
        )
    )

    training_job_ref: LocalObjectReference | None = None
    """A TrainingJob whose model is wanted (it must succeed and pass its gates)."""
    uri: Annotated[str, Field(max_length=2048, pattern=r"^(file|pvc|s3|https?)://.+$")] | None = (
        None
    )
    """A model directory URI (model.onnx + model.json)."""
    training_job_selector: LabelSelector | None = None
    """The newest TrainingJob matching these labels that succeeded and passed its gates;
    a retrain creating a new matching TrainingJob rolls out with no spec edit."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        chosen = [
            n
            for n, v in (
                ("trainingJobRef", self.training_job_ref),
                ("uri", self.uri),
                ("trainingJobSelector", self.training_job_selector),
            )
            if v is not None
        ]
        if len(chosen) != 1:
            raise ValueError(
                "exactly one of trainingJobRef, uri or trainingJobSelector must be set"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        return self


class Pause(ApiModel):
    """Wait at the current weight."""

    duration: Duration | None = None
    """How long to wait; without it the rollout waits for a manual promote."""


class CanaryStep(ApiModel):
    """One canary step: exactly one of setWeight or pause."""

    model_config = cel_rules(
        (
            "has(self.setWeight) != has(self.pause)",
            "a canary step sets exactly one of setWeight or pause",
        )
    )

    set_weight: Weight | None = None
    """Percentage of traffic to send to the candidate."""
    pause: Pause | None = None
    """Wait before the next step."""

    @model_validator(mode="after")
    def _one(self) -> CanaryStep:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a canary step sets exactly one of setWeight or pause")
        return self


class CanaryStrategy(ApiModel):
    """Shift traffic to the candidate in steps, analysing each."""

    model_config = cel_rules(
        (
            "!has(self.steps) || self.steps.filter(s, has(s.setWeight))"
            ".map(s, s.setWeight).isSorted()",
            "steps: setWeight must not decrease from one step to the next",
        ),
    )

    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=32)] = Field(
        default_factory=lambda: [
            CanaryStep(set_weight=10),
            CanaryStep(pause=Pause(duration="30s")),
            CanaryStep(set_weight=50),
            CanaryStep(pause=Pause(duration="30s")),
        ]
    )
    """Steps in order; the candidate is promoted to 100 % after the last one.
    When absent: setWeight 10, pause 30s, setWeight 50, pause 30s."""
    sticky_header: Annotated[str, Field(max_length=128, pattern=r"^[A-Za-z0-9-]+$")] | None = None
    """Request header whose value pins a client to one variant (consistent hashing)."""

    @model_validator(mode="after")
    def _non_decreasing(self) -> CanaryStrategy:
        weights = [(i, s.set_weight) for i, s in enumerate(self.steps) if s.set_weight is not None]
        for (_, a), (i, b) in itertools.pairwise(weights):
            if b < a:
                raise ValueError(
                    f"steps[{i}]: setWeight {b} is lower than the setWeight {a} before it "
                    f"(step {i + 1} of {len(self.steps)}); weights must not decrease"
                )
        return self


class BlueGreenStrategy(ApiModel):
    """Run the new version beside the old with no user traffic, then switch at once."""

    auto_promotion_seconds: Annotated[int, Field(ge=0, le=86400)] | None = None
    """Switch 100 % to the new version this long after its first passing analysis, if no
    analysis failed since (an inconclusive one, too few requests, does not reset it; a
    failed one does). Without SLOs in `spec.analysis` it counts from the preview's
    readiness. Without it the switch waits for a manual promote."""
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=86400)] = 30
    """Keep the old version running this long after the switch, as `status.previous`:
    an abort meanwhile switches all traffic back to it at once."""


class ShadowStrategy(ApiModel):
    """Mirror requests to the new version, compare answers, never return its answers."""

    percent: Annotated[int, Field(ge=1, le=100)] = 100
    """Share of requests copied to the shadow."""
    duration: Duration = "5m"
    """How long to compare before deciding."""
    promote: bool = True
    """Promote after a healthy comparison; when false, hold until a manual promote."""


STRATEGY_BLOCKS: dict[str, str] = {
    "Canary": "canary",
    "BlueGreen": "blueGreen",
    "Shadow": "shadow",
}
"""Each `strategy.type` and the settings block (field alias) only it may set."""


class Strategy(ApiModel):
    """How a new version reaches traffic."""

    model_config = cel_rules(
        *(
            (
                f"self.type == '{kind}' || !has(self.{block})",
                f"strategy.{block} is only allowed with type {kind}",
            )
            for kind, block in STRATEGY_BLOCKS.items()
        )
    )

    type: Literal["Canary", "BlueGreen", "Shadow"] = "Canary"
    """Rollout strategy."""
    canary: CanaryStrategy | None = None
    """Canary settings (type Canary)."""
    blue_green: BlueGreenStrategy | None = None
    """Blue-green settings (type BlueGreen)."""
    shadow: ShadowStrategy | None = None
    """Shadow settings (type Shadow)."""

    @model_validator(mode="after")
    def _block_matches_type(self) -> Strategy:
        for kind, block in STRATEGY_BLOCKS.items():
            if getattr(self, to_snake(block)) is not None and kind != self.type:
                raise ValueError(
                    f"strategy.{block} is only allowed with type {kind} (type is {self.type})"
                )
        return self

    def canary_or_default(self) -> CanaryStrategy:
        return self.canary or CanaryStrategy()

    def blue_green_or_default(self) -> BlueGreenStrategy:
        return self.blue_green or BlueGreenStrategy()

    def shadow_or_default(self) -> ShadowStrategy:
        return self.shadow or ShadowStrategy()


class LatencySLO(ApiModel):
    p99_ms: Annotated[float, Field(gt=0)]
    """Largest acceptable 99th-percentile latency at the router, in milliseconds."""


class ErrorRateSLO(ApiModel):
    max: Annotated[float, Field(ge=0, le=1)]
    """Largest acceptable share of failed requests (0..1)."""


class DriftSLO(ApiModel):
    max_score: Annotated[float, Field(ge=0)]
    """Largest acceptable data-set drift score reported by a DriftMonitor."""


class ShadowSLO(ApiModel):
    min_agreement: Annotated[float, Field(ge=0, le=1)]
    """Smallest acceptable share of shadow answers that agree with the primary's."""


class Analysis(ApiModel):
    """How the candidate is judged during a rollout."""

    interval: Duration = "30s"
    """Time between analyses."""
    failure_limit: Annotated[int, Field(ge=0, le=100)] = 0
    """Failed analyses tolerated; one more rolls back."""
    min_requests: Annotated[int, Field(ge=0)] = 20
    """Fewer candidate requests in an interval make the analysis inconclusive (no verdict)."""
    latency: LatencySLO | None = None
    """Latency SLO."""
    error_rate: ErrorRateSLO | None = None
    """Error-rate SLO."""
    drift: DriftSLO | None = None
    """Drift SLO (needs a DriftMonitor on this deployment)."""
    shadow: ShadowSLO | None = None
    """Agreement SLO (Shadow strategy)."""


class ServerSpec(ApiModel):
    """Settings of the model server pods."""

    threads: Annotated[int, Field(ge=1, le=64)] = 1
    """onnxruntime intra-op threads."""
    max_batch_size: Annotated[int, Field(ge=1, le=4096)] = 1
    """Adaptive batching: most requests merged into one inference (1 = off)."""
    max_batch_wait_us: Annotated[int, Field(ge=0, le=100000)] = 500
    """Adaptive batching: longest wait for a batch to fill, in microseconds."""
    strict_schema: bool = False
    """Answer 400 to a feature value outside the Dataset schema (below `min`, above `max`,
    not an int, not a bool). By default such values are scored and counted
    (`pilotage_feature_out_of_schema_total`, the DriftMonitor's `status.outOfSchema`)."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Resources of each server pod."""


SecretName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]


class RouterSpec(ApiModel):
    """Settings of the router pods."""

    replicas: Annotated[int, Field(ge=1, le=50)] = 1
    """Router pods."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Resources of each router pod."""
    variant_token_secret: SecretName | None = None
    """Secret (key `token`) whose value lets a tester force a variant: requests with
    `x-pilotage-variant` (e.g. `preview` in blue-green) must carry it in
    `x-pilotage-variant-token`. Without it forcing a variant is off (403). Forced requests
    are never counted in the analysis. See docs/security.md."""
    feedback_token_secret: SecretName | None = None
    """Secret (key `token`) that `POST /v1/feedback` on the router's public port needs as
    `Authorization: Bearer`. Without it public feedback is open (request ids are
    unguessable). See docs/security.md."""


class AutoscalingTarget(ApiModel):
    """The load one replica should carry: exactly one of inFlight or requestsPerSecond."""

    model_config = cel_rules(
        (
            "has(self.inFlight) != has(self.requestsPerSecond)",
            "autoscaling.target sets exactly one of inFlight or requestsPerSecond",
        )
    )

    in_flight: Annotated[float, Field(gt=0, le=10000)] | None = None
    """Requests in progress at once per replica (concurrency), averaged over the window."""
    requests_per_second: Annotated[float, Field(gt=0, le=1000000)] | None = None
    """Requests per second per replica, averaged over the window."""

    @model_validator(mode="after")
    def _one(self) -> AutoscalingTarget:
        if (self.in_flight is None) == (self.requests_per_second is None):
            raise ValueError("autoscaling.target sets exactly one of inFlight or requestsPerSecond")
        return self


class Autoscaling(ApiModel):
    """Scale each variant's servers on its own live load, seen by the router.

    The stable window averages the load over `window`; a short `panicWindow` reacts to
    bursts (as Knative's autoscaler does). Each variant (stable, canary, preview, shadow)
    scales separately; traffic weights do not change with replica counts.
    """

    model_config = cel_rules(
        (
            "self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must not be greater than maxReplicas",
        ),
    )

    min_replicas: Annotated[int, Field(ge=0, le=100)] = 1
    """Fewest replicas per variant; 0 lets an idle variant scale to zero after
    `scaleToZeroAfter` (the next request waits in the router while one starts)."""
    max_replicas: Annotated[int, Field(ge=1, le=100)] = 10
    """Most replicas per variant."""
    target: AutoscalingTarget = Field(default_factory=lambda: AutoscalingTarget(in_flight=4))
    """Load per replica to aim at. Default: 4 requests in flight."""
    interval: Duration = "2s"
    """How often the router's counters are read and the replica counts decided."""
    window: Duration = "60s"
    """Stable window: the load is averaged over this long."""
    panic_window: Duration = "6s"
    """Panic window: when the load over this short window needs `panicThreshold` times
    the ready replicas, scale up on it at once and do not scale down until a whole
    `window` has passed without such a burst."""
    panic_threshold: Annotated[float, Field(ge=1, le=100)] = 2.0
    """Ratio of wanted to ready replicas (over the panic window) that starts panic mode."""
    scale_up_rate: Annotated[float, Field(gt=1, le=1000)] = 10.0
    """How quickly to scale up: at most this many times the ready replicas per decision."""
    scale_down_delay: Duration = "30s"
    """How long the load must stay lower before replicas are removed (the highest count
    wanted over that time is kept)."""
    scale_to_zero_after: Duration = "60s"
    """With `minReplicas: 0`, a variant with no request for this long goes to zero."""
    activation_timeout: Duration = "30s"
    """How long a request for a variant at zero waits in the router for the first replica;
    past it the router answers 503."""
    max_held_requests: Annotated[int, Field(ge=1, le=100000)] = 1000
    """Most requests held in the router at once while a variant starts from zero; more
    are answered 503 at once."""

    @model_validator(mode="after")
    def _consistent(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.minReplicas ({self.min_replicas}) must not be greater than "
                f"maxReplicas ({self.max_replicas})"
            )
        for name, value in (
            ("interval", self.interval),
            ("window", self.window),
            ("panicWindow", self.panic_window),
            ("activationTimeout", self.activation_timeout),
        ):
            if parse_duration(value) <= 0:
                raise ValueError(f"autoscaling.{name} must be longer than 0, got {value}")
        if parse_duration(self.panic_window) > parse_duration(self.window):
            raise ValueError(
                f"autoscaling.panicWindow ({self.panic_window}) must not be longer than "
                f"window ({self.window})"
            )
        return self


class LogSink(ApiModel):
    """Where inference-log records go."""

    uri: Annotated[str, Field(max_length=2048, pattern=r"^(file:///|pvc://|s3://|https?://).+$")]
    """`pvc://CLAIM/dir` (a PersistentVolumeClaim the operator mounts into the router pods;
    locally under `$PILOTAGE_PVC_ROOT`), `file:///dir` (a directory the router can write),
    `s3://bucket/prefix`, or `http(s)://collector/path` (CloudEvents batches)."""
    timeout_seconds: Annotated[float, Field(ge=0.1, le=600)] = 5.0
    """How long one write to S3 or the collector may take; past it the batch is dropped
    (counted)."""


class InferenceLogging(ApiModel):
    """Inference logging in the router: sampled requests joined with their answers, and
    feedback labels, written in batches off the request path. See
    docs/inference-logging.md."""

    model_config = cel_rules(
        (
            "self.sampleRate == 0.0 || has(self.sink)",
            "logging.sink is required when sampleRate > 0",
        ),
    )

    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of answered inference requests logged (0: off, 1: every one)."""
    sink: LogSink | None = None
    """Where records go."""
    redact: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=253)]], Field(max_length=256)
    ] = Field(default_factory=list)
    """Feature names never written (not as keys, not inside error texts)."""
    shadow: bool = False
    """Also log the shadow variant's answers to mirrored requests."""

    @model_validator(mode="after")
    def _sink_when_on(self) -> InferenceLogging:
        if self.sample_rate > 0 and self.sink is None:
            raise ValueError("logging.sink is required when sampleRate > 0")
        return self


class ModelDeploymentSpec(ApiModel):
    """Desired state of a ModelDeployment."""

    model: ModelSource
    """The wanted model version."""
    replicas: Annotated[int, Field(ge=1, le=100)] = 1
    """Server pods per variant. With `autoscaling`, the count each variant starts with
    (kept within minReplicas..maxReplicas)."""
    autoscaling: Autoscaling | None = None
    """Scale each variant's servers on its live load, down to zero when `minReplicas` is 0.
    Without it every variant runs `replicas` servers."""
    server: ServerSpec = Field(default_factory=ServerSpec)
    """Model server settings."""
    router: RouterSpec = Field(default_factory=RouterSpec)
    """Router settings."""
    strategy: Strategy = Field(default_factory=Strategy)
    """How new versions reach traffic."""
    analysis: Analysis = Field(default_factory=Analysis)
    """How candidates are judged."""
    auto_rollback: bool = True
    """Roll back automatically when the analysis fails beyond `failureLimit`."""
    logging: InferenceLogging = Field(default_factory=InferenceLogging)
    """Inference logging (off by default)."""


class ModelRef(ApiModel):
    version: Annotated[str, Field(max_length=63)]
    """Model version."""
    uri: Annotated[str, Field(max_length=2048)]
    """Model directory URI."""
    training_job: Annotated[str, Field(max_length=253)] | None = None
    """TrainingJob that produced it."""


class AnalysisResult(ApiModel):
    time: Timestamp
    """When the analysis ran."""
    requests: int = 0
    """Candidate requests in the interval."""
    p99_ms: float | None = None
    """Measured 99th-percentile latency of the candidate (ms)."""
    error_rate: float | None = None
    """Measured error rate of the candidate."""
    drift_score: float | None = None
    """Drift score from the DriftMonitor."""
    agreement: float | None = None
    """Shadow agreement."""
    verdict: Literal["Pass", "Fail", "Inconclusive"]
    """Outcome."""
    failures: int = 0
    """Consecutive failed analyses."""
    message: ShortText = ""
    """Which SLO failed, measured vs limit."""


class HistoryEntry(ApiModel):
    time: Timestamp
    """When it happened."""
    version: Annotated[str, Field(max_length=63)]
    """Version concerned."""
    action: Literal["Deployed", "RolloutStarted", "Promoted", "RolledBack", "Aborted", "Rejected"]
    """What happened."""
    reason: Annotated[str, Field(max_length=128)] = ""
    """CamelCase reason."""
    message: ShortText = ""
    """Detail, e.g. measured value vs SLO."""


class VariantReplicas(ApiModel):
    """Replicas of one variant and the autoscaler's memory of it."""

    version: Annotated[str, Field(max_length=63)]
    """Model version of the variant."""
    desired: Annotated[int, Field(ge=0)] = 0
    """Replicas wanted."""
    ready: Annotated[int, Field(ge=0)] = 0
    """Replicas ready."""
    load: float | None = None
    """Load over the stable window (in flight, or requests per second, per the target)."""
    last_scale_time: Timestamp | None = None
    """When `desired` last changed."""
    active_time: Timestamp | None = None
    """When the variant last had a request."""
    down_since: Timestamp | None = None
    """Since when fewer replicas have been wanted (scaleDownDelay counts from it)."""
    down_to: Annotated[int, Field(ge=0)] | None = None
    """The most replicas wanted since `downSince`: what a scale-down goes to."""
    panic_since: Timestamp | None = None
    """When the last burst (panic mode) was seen; no scale-down for a window after it."""


class RoutesStatus(ApiModel):
    """The routing table last sent to the router."""

    revision: Annotated[str, Field(max_length=63)] = ""
    """Hash of the table's content; the router reports it in use in its stats."""
    sequence: Annotated[int, Field(ge=0)] = 0
    """Grows by one whenever the revision changes; the router never applies a table with
    a lower one (a late ConfigMap copy of a superseded table)."""


class LoggingStatus(ApiModel):
    """Inference-log counters of the router pods, added up."""

    written: int = 0
    """Request records written."""
    labels: int = 0
    """Feedback labels written."""
    dropped: int = 0
    """Records dropped: the buffer was full (a slow sink) or a sink write failed."""
    last_error: ShortText = ""
    """The last sink failure, if any."""


class ModelDeploymentStatus(ApiModel):
    """Observed state of a ModelDeployment."""

    phase: Literal["Pending", "Progressing", "Paused", "Healthy", "Degraded"] = "Pending"
    """Lifecycle phase."""
    observed_generation: int = 0
    """Generation last reconciled."""
    conditions: list[Condition] = conditions_field()
    """kstatus conditions."""
    stable: ModelRef | None = None
    """The version serving users."""
    candidate: ModelRef | None = None
    """The version being rolled out."""
    current_step: int | None = None
    """Index of the canary step in progress."""
    step_started: Timestamp | None = None
    """When the current step (or pause, or shadow/blue-green wait) began."""
    passing_since: Timestamp | None = None
    """Blue-green: when the candidate's first passing analysis ended, if none failed since;
    `autoPromotionSeconds` count from it."""
    traffic: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=dict, max_length=8
    )
    """Variant → percentage of user traffic."""
    traffic_summary: Annotated[str, Field(max_length=128)] = ""
    """Traffic as text for `kubectl get`, e.g. `stable 90 / canary 10`."""
    replicas: dict[str, VariantReplicas] = Field(default_factory=dict, max_length=8)
    """Variant → replicas wanted and ready (with autoscaling)."""
    replicas_summary: Annotated[str, Field(max_length=128)] = ""
    """Ready/desired replicas as text for `kubectl get`, e.g. `stable 3/3 / canary 1/1`."""
    endpoint: Annotated[str, Field(max_length=2048)] | None = None
    """URL clients send requests to (the router). It survives restarts of the router and
    of `pilotage up`; when it cannot (its port was taken), `endpointNote` says why."""
    endpoint_note: ShortText = ""
    """Why `endpoint` last changed, and from what (also an `EndpointChanged` event)."""
    last_analysis: AnalysisResult | None = None
    """Latest analysis."""
    history: Annotated[list[HistoryEntry], Field(max_length=20)] = Field(default_factory=list)
    """Recent promotions, rollbacks and aborts, newest last."""
    rejected_version: Annotated[str, Field(max_length=63)] | None = None
    """A version that was rolled back or aborted; not retried until `retry` or a new version."""
    previous: ModelRef | None = None
    """The old stable kept up after a blue-green switch until the scale-down delay passes;
    an abort meanwhile makes it stable again at once."""
    scale_down_at: Timestamp | None = None
    """When `previous` is removed."""
    analysis_checkpoint: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Router counters at the start of the current analysis interval (internal)."""
    handled_actions: dict[str, Annotated[str, Field(max_length=128)]] = Field(
        default_factory=dict, max_length=16
    )
    """Manual-action annotation values already acted on (promote, abort, retry)."""
    message: ShortText = ""
    """One line about the current state."""
    logging: LoggingStatus | None = None
    """Inference-log counters (when logging is on)."""
    routes: RoutesStatus | None = None
    """The routing table last sent to the router."""


class ModelDeployment(Resource):
    """A served model behind a router, with progressive delivery of new versions."""

    KIND: ClassVar[str] = "ModelDeployment"
    PLURAL: ClassVar[str] = "modeldeployments"
    SHORT_NAMES: ClassVar[list[str]] = ["md"]
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(
            name="Stable",
            type="string",
            json_path=".status.stable.version",
            description="Version serving users.",
        ),
        PrinterColumn(
            name="Candidate",
            type="string",
            json_path=".status.candidate.version",
            description="Version being rolled out.",
        ),
        PrinterColumn(name="Traffic", type="string", json_path=".status.trafficSummary"),
        PrinterColumn(name="P99ms", type="number", json_path=".status.lastAnalysis.p99Ms"),
        PrinterColumn(
            name="Replicas",
            type="string",
            json_path=".status.replicasSummary",
            description="Ready/desired server replicas per variant (autoscaling).",
        ),
        PrinterColumn(name="Strategy", type="string", json_path=".spec.strategy.type", priority=1),
        PrinterColumn(name="Endpoint", type="string", json_path=".status.endpoint", priority=1),
        age_column(),
    ]

    kind: Literal["ModelDeployment"] = "ModelDeployment"
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
