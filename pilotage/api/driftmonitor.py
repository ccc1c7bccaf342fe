"""DriftMonitor: watches one ModelDeployment's live inputs against the training baseline."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from pilotage.api.common import (
    ApiModel,
    Condition,
    Duration,
    LocalObjectReference,
    ShortText,
    Timestamp,
    cel_rules,
    conditions_field,
)
from pilotage.api.resource import PrinterColumn, Resource, age_column
from pilotage.api.trainingjob import TrainingJobSpec

DriftMethod = Literal["psi", "ks", "js", "wasserstein", "chi2", "auto"]
Trigger = Literal["drift", "performance", "schedule", "datasetChange", "manual"]


class Window(ApiModel):
    """Which live requests a check looks at: the last N requests, or a duration."""

    model_config = cel_rules(
        (
            "has(self.requests) != has(self.duration)",
            "window sets exactly one of requests or duration",
        )
    )

    requests: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    """Rows seen since the previous check, at most this many most recent (from counter deltas)."""
    duration: Duration | None = None
    """Everything received over this long."""

    @model_validator(mode="after")
    def _one(self) -> Window:
        if (self.requests is None) == (self.duration is None):
            raise ValueError("window sets exactly one of requests or duration")
        return self


class TemplateMetadata(ApiModel):
    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=64
    )
    """Labels of the created TrainingJob (match them with a deployment's trainingJobSelector)."""
    annotations: dict[str, Annotated[str, Field(max_length=8192)]] = Field(
        default_factory=dict, max_length=64
    )
    """Annotations of the created TrainingJob."""


class TrainingJobTemplate(ApiModel):
    """The TrainingJob a retrain creates."""

    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata)
    """Labels and annotations of the new TrainingJob."""
    spec: TrainingJobSpec
    """Spec of the new TrainingJob (its version is generated)."""


class RetrainSpec(ApiModel):
    template: TrainingJobTemplate
    """The TrainingJob to create."""


class ChampionPolicy(ApiModel):
    """Champion and challenger: a retrain must beat (or match) the stable version."""

    compare: bool = True
    """Score the stable version on the retrain's held-out rows; the retrain passes its gates
    only if it is at least as good on every gate metric (accuracy or r2 without gates)."""
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """How much worse than the stable version a retrain may score and still be rolled out."""


class OnDrift(ApiModel):
    """What to do when drift (or a performance drop) is detected."""

    rollback: bool = True
    """Roll back a candidate that is in rollout (its traffic goes to 0)."""
    retrain: RetrainSpec | None = None
    """Create a TrainingJob from this template."""
    cooldown: Duration = "30m"
    """No new retrain sooner than this after the previous one, whatever triggered it."""
    champion: ChampionPolicy = Field(default_factory=ChampionPolicy)
    """How a retrained model is compared with the deployment's stable version."""


class PerformanceSpec(ApiModel):
    """Live quality from feedback (`POST /v1/feedback` on the router)."""

    model_config = cel_rules(("has(self.min) || has(self.max)", "performance: set min or max"))

    metric: Literal["accuracy", "mae"] = "accuracy"
    """accuracy (classification) or mae (regression)."""
    min: float | None = None
    """Trigger below this value (accuracy)."""
    max: float | None = None
    """Trigger above this value (mae)."""
    min_samples: Annotated[int, Field(ge=1)] = 50
    """Labelled requests needed before judging."""

    @model_validator(mode="after")
    def _bound(self) -> PerformanceSpec:
        if self.min is None and self.max is None:
            raise ValueError("performance: set min or max")
        return self


class DriftMonitorSpec(ApiModel):
    """Desired state of a DriftMonitor."""

    deployment_ref: LocalObjectReference
    """The ModelDeployment whose live inputs are watched."""
    method: DriftMethod = "psi"
    """Statistic; `auto` picks per feature (numeric vs categorical)."""
    threshold: Annotated[float, Field(ge=0)] = 0.2
    """Per-feature threshold of the statistic (for p-value tests: drift when p < threshold)."""
    feature_thresholds: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, max_length=1000
    )
    """Per-feature overrides of `threshold`."""
    drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Share of drifted features that makes the data set drift."""
    window: Window = Field(default_factory=lambda: Window(requests=1000))
    """Requests considered by one check."""
    interval: Duration = "1m"
    """Time between checks."""
    min_samples: Annotated[int, Field(ge=1)] = 100
    """Fewer rows in the window report InsufficientData instead of guessing."""
    consecutive: Annotated[int, Field(ge=1, le=100)] = 1
    """Drifting checks in a row needed before acting (hysteresis)."""
    on_drift: OnDrift = Field(default_factory=OnDrift)
    """Actions."""
    performance: PerformanceSpec | None = None
    """Trigger the same actions on a live-quality drop."""
    schedule: Annotated[str, Field(max_length=128)] | None = None
    """Cron expression for scheduled retraining, e.g. `0 3 * * *`."""
    retrain_on_dataset_change: bool = False
    """Retrain when the Dataset's fingerprint changes (new data arrived)."""


class FeatureDrift(ApiModel):
    name: Annotated[str, Field(max_length=256)]
    """Feature."""
    method: Annotated[str, Field(max_length=32)]
    """Statistic used."""
    score: float
    """Measured statistic (PSI, JS distance, normalised Wasserstein, KS D, chi-squared)."""
    p_value: float | None = None
    """p-value of a test (ks, chi2); the feature drifts when it is below `threshold`."""
    threshold: float
    """Threshold applied: to `pValue` for ks and chi2, to `score` for the others."""
    drifted: bool
    """Verdict."""

    def text(self) -> str:
        """`age psi=0.312`, or for a test `country chi2 p=1.2e-10 < 0.01 (statistic 555.5)`."""
        return drift_text(self.name, self.method, self.score, self.p_value, self.threshold)


def drift_text(
    name: str, method: str, score: float, p_value: float | None, threshold: float
) -> str:
    """One statistic as people read it: the p-value against its threshold for a test
    (the statistic beside it), the score itself for the distances."""
    if p_value is None:
        return f"{name} {method}={score:.3f}"
    relation = "<" if p_value < threshold else ">="
    return f"{name} {method} p={p_value:.3g} {relation} {threshold:g} (statistic {score:.4g})"


class PredictionDrift(ApiModel):
    score: float
    """Drift of the prediction distribution (the statistic)."""
    p_value: float | None = None
    """p-value when the method is a test (ks, chi2)."""
    drifted: bool
    """Verdict."""


class LiveMetrics(ApiModel):
    samples: int = 0
    """Labelled requests."""
    accuracy: float | None = None
    """Live accuracy (classification)."""
    mae: float | None = None
    """Live mean absolute error (regression)."""


class RetrainRecord(ApiModel):
    name: Annotated[str, Field(max_length=253)]
    """TrainingJob created."""
    trigger: Trigger
    """What fired."""
    time: Timestamp
    """When."""
    message: ShortText = ""
    """Why, e.g. the drifted features with their scores."""


class DriftMonitorStatus(ApiModel):
    """Observed state of a DriftMonitor."""

    phase: Literal["Pending", "Healthy", "Drifting", "InsufficientData"] = "Pending"
    """Verdict of the last check."""
    observed_generation: int = 0
    """Generation last reconciled."""
    conditions: list[Condition] = conditions_field()
    """kstatus conditions."""
    samples: int = 0
    """Rows in the last window."""
    features: Annotated[list[FeatureDrift], Field(max_length=1000)] = Field(default_factory=list)
    """Per-feature scores of the last check, most drifted first."""
    dataset_drift: bool = False
    """Data-set verdict (`driftShare` reached)."""
    drift_score: float | None = None
    """Share of drifted features (0..1), read by a deployment's drift SLO."""
    prediction_drift: PredictionDrift | None = None
    """Drift of the prediction distribution."""
    out_of_schema: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, max_length=1000
    )
    """Feature → values of the last checked window outside the Dataset schema (below `min`,
    above `max`, not an int, not a bool); they are scored unless the servers are strict."""
    live: LiveMetrics | None = None
    """Live quality from feedback."""
    consecutive_drifting: int = 0
    """Drifting checks in a row."""
    last_check_time: Timestamp | None = None
    """When the last check ran."""
    last_retrain: RetrainRecord | None = None
    """Last retrain this monitor created."""
    retrains: int = 0
    """Retrains created so far."""
    snapshot_request: Annotated[str, Field(max_length=64)] | None = None
    """When a retrain asked its `logs://` Dataset for a fresh snapshot (the Dataset is
    profiled again, and the retrain starts once it is)."""
    retrain_not_started: ShortText | None = None
    """Why a retrain that a trigger wanted was not started (the Dataset holds the very data
    the stable version learned from); cleared when a retrain starts."""
    last_schedule_time: Timestamp | None = None
    """Last scheduled retrain considered."""
    dataset_fingerprint: Annotated[str, Field(max_length=80)] | None = None
    """Dataset fingerprint seen at the last check."""
    version: Annotated[str, Field(max_length=63)] | None = None
    """Model version the baseline comes from."""
    checkpoint: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Counter snapshot the next window is measured from (internal)."""
    message: ShortText = ""
    """One line: which features moved and by how much."""


class DriftMonitor(Resource):
    """Drift and live-quality watch over one ModelDeployment, with rollback and retraining."""

    KIND: ClassVar[str] = "DriftMonitor"
    PLURAL: ClassVar[str] = "driftmonitors"
    SHORT_NAMES: ClassVar[list[str]] = ["dm"]
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="Deployment", type="string", json_path=".spec.deploymentRef.name"),
        PrinterColumn(name="Samples", type="integer", json_path=".status.samples"),
        PrinterColumn(name="Drift", type="number", json_path=".status.driftScore"),
        PrinterColumn(
            name="Retrain", type="string", json_path=".status.lastRetrain.name", priority=1
        ),
        age_column(),
    ]

    kind: Literal["DriftMonitor"] = "DriftMonitor"
    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None
