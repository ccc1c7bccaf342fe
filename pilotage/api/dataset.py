"""Dataset: where data comes from and what it must look like."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from pilotage import sources
from pilotage.api.common import (
    ApiModel,
    Condition,
    Duration,
    LocalObjectReference,
    Name,
    ShortText,
    Timestamp,
    cel_rules,
    conditions_field,
)
from pilotage.api.resource import PrinterColumn, Resource, age_column

ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


def _uri_schema(schema: dict[str, Any]) -> None:
    # The CRD's pattern lists the schemes of the sources registered when it is generated.
    schema["pattern"] = sources.uri_pattern()


class BaseData(ApiModel):
    """Data appended to what the logs give (a retrain should not forget the original data)."""

    uri: Annotated[str, Field(max_length=2048, json_schema_extra=_uri_schema)]
    """Any source URI but `logs://`: `builtin://iris`, `file:///path.csv`, `pvc://`, `s3://`,
    `https://`."""
    format: Literal["csv", "parquet"] | None = None
    """File format; inferred from the extension when absent."""

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        problem = sources.uri_problem(uri)
        if problem:
            raise ValueError(problem)
        return uri


class InferenceLogs(ApiModel):
    """A window of a ModelDeployment's inference logs (`uri: logs://DEPLOYMENT`), joined with
    the feedback labels by request id and materialised as one Parquet snapshot."""

    sink: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    """Where the logs are: `file:///dir`, `pvc://CLAIM/dir` or `s3://bucket/prefix` (an
    `https://` collector keeps its own copy and cannot be read back). When absent, the sink
    of the ModelDeployment the URI names (its `spec.logging.sink.uri`, read at each
    profiling run); give it to read logs the deployment no longer points at (e.g. after it
    was deleted). `status.snapshot.sink` says which sink was read."""
    window: Duration = "168h"
    """How far back from the profiling run's start the logs are read (`168h`: 7 days)."""
    labelled: bool = True
    """Keep only the rows whose request got a feedback label (for training); false keeps every
    logged row, the target empty where no label came (for profiling live inputs)."""
    base: BaseData | None = None
    """Rows appended after the logged ones, e.g. the data the first version learned from;
    it must have the snapshot's feature and target columns."""
    max_labels: Annotated[int, Field(ge=1, le=50_000_000)] = 5_000_000
    """At most this many labels are joined (they are held in memory, about 100 bytes each,
    while the requests are streamed); a window with more fails the profiling run."""


class DataSource(ApiModel):
    """Where the data is read from."""

    model_config = cel_rules(
        (
            "!has(self.inferenceLogs) || self.uri.startsWith('logs://')",
            "spec.source.inferenceLogs is only for a logs:// uri",
        )
    )

    uri: Annotated[str, Field(max_length=2048, json_schema_extra=_uri_schema)]
    """`builtin://iris|wine|breast_cancer|diabetes|digits`, `file:///path`, `pvc://CLAIM/path`,
    `s3://bucket/key`, `https://host/path`, or `logs://DEPLOYMENT` (a ModelDeployment's
    inference logs, read as `inferenceLogs` says)."""
    inference_logs: InferenceLogs | None = None
    """With `uri: logs://DEPLOYMENT`: where the logs are (the deployment's sink when left
    out), the window, labelled rows only or all, and base data to append; every field has a
    default, so `uri: logs://DEPLOYMENT` alone reads its labelled rows of the last 7 days."""
    format: Literal["csv", "parquet"] | None = None
    """File format; inferred from the extension when absent."""
    credentials_secret_ref: LocalObjectReference | None = None
    """Secret with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_ENDPOINT_URL`,
    `AWS_REGION`, `AWS_SESSION_TOKEN` for an `s3://` source. The run that reads the data gets
    exactly this Secret (mounted, not as env) instead of the operator-wide S3 credentials;
    on the embedded runtime it is the directory `<state-dir>/secrets/<namespace>/<name>/`,
    one file per key."""

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        problem = sources.uri_problem(uri)
        if problem:
            raise ValueError(problem)
        return uri

    @model_validator(mode="after")
    def _source_fields(self) -> DataSource:
        problem = sources.spec_problem(self)
        if problem and "inferenceLogs" in problem:
            raise ValueError(problem.removeprefix("spec.source."))
        return self


class ColumnSchema(ApiModel):
    """What one column must look like."""

    model_config = cel_rules(
        (
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "a column's min must not be greater than its max",
        )
    )

    name: ColumnName
    """Column name."""
    type: Literal["float", "int", "category", "bool"]
    """Logical type."""
    nullable: bool = True
    """Whether missing values are allowed."""
    min: float | None = None
    """Smallest allowed value (numeric columns)."""
    max: float | None = None
    """Largest allowed value (numeric columns)."""
    allowed_values: (
        Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=1000)] | None
    ) = None
    """Allowed categories (category columns)."""

    @model_validator(mode="after")
    def _range(self) -> ColumnSchema:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name}: min {self.min} is greater than max {self.max}")
        return self


class Split(ApiModel):
    """How rows are split into training and test sets."""

    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    """Fraction of rows held out for evaluation."""
    seed: Annotated[int, Field(ge=0)] = 42
    """Random seed of the split."""
    stratify: bool = True
    """Keep class proportions in both parts (classification only)."""


class DatasetSpec(ApiModel):
    """Desired state of a Dataset."""

    source: DataSource
    """Where the data comes from."""
    target: ColumnName | None = None
    """Column to predict; `target` for builtin data sets."""
    features: Annotated[list[ColumnName], Field(max_length=1000)] | None = None
    """Feature columns in order; all other columns but the target when absent."""
    schema_: Annotated[list[ColumnSchema], Field(max_length=1000)] | None = Field(
        default=None, alias="schema"
    )
    """Per-column expectations checked on every load."""
    split: Split = Field(default_factory=Split)
    """Train/test split."""
    max_duplicate_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    """Fail validation when more than this fraction of rows are exact duplicates."""


class Finding(ApiModel):
    """One data-quality finding."""

    column: Annotated[str, Field(max_length=256)] = ""
    """Column concerned; empty for whole-row findings."""
    kind: Literal[
        "missing", "outOfRange", "notAllowed", "typeMismatch", "duplicates", "allNull", "constant"
    ]
    """What was found."""
    count: Annotated[int, Field(ge=0)]
    """Rows affected."""
    severity: Literal["warning", "error"] = "warning"
    """`error` findings make the Dataset unusable."""
    message: ShortText = ""
    """Detail."""


class ColumnSummary(ApiModel):
    """What the profiling run saw in one column (the full bins are in `profileUri`)."""

    name: ColumnName
    """Column."""
    role: Literal["feature", "target"]
    """Whether the column is a feature or the target."""
    type: Literal["float", "int", "category", "bool"]
    """Type from the schema, or inferred."""
    missing: Annotated[int, Field(ge=0)] = 0
    """Null cells (after reading; a target row that is null is dropped)."""
    distinct: Annotated[int, Field(ge=0)] = 0
    """Distinct non-null values."""
    min: float | None = None
    """Smallest value (numeric columns)."""
    max: float | None = None
    """Largest value (numeric columns)."""


class Snapshot(ApiModel):
    """The data a source materialised for this profile (a `logs://` window): what a
    TrainingJob of this Dataset reads, instead of the source."""

    uri: Annotated[str, Field(max_length=2048)]
    """The Parquet file in the artifact store."""
    rows: Annotated[int, Field(ge=0)]
    """Rows in the snapshot (logged rows plus base rows)."""
    logged_rows: Annotated[int, Field(ge=0)] = 0
    """Rows that came from the logs."""
    labelled_rows: Annotated[int, Field(ge=0)] = 0
    """Logged rows that carry a feedback label."""
    base_rows: Annotated[int, Field(ge=0)] = 0
    """Rows appended from `inferenceLogs.base`."""
    sink: Annotated[str, Field(max_length=2048)] | None = None
    """The sink the logs were read from (`inferenceLogs.sink`, or the deployment's)."""
    requests: Annotated[int, Field(ge=0)] = 0
    """Request records read in the window."""
    labels: Annotated[int, Field(ge=0)] = 0
    """Label records read in the window."""
    skipped: Annotated[int, Field(ge=0)] = 0
    """Records left out: torn or invalid lines, failed or shadow requests, rows without
    named features."""
    unreadable: Annotated[int, Field(ge=0)] = 0
    """Log files that could not be read (the profiling run's log names them)."""
    window_start: Timestamp | None = None
    """Start of the window read (inclusive)."""
    window_end: Timestamp | None = None
    """End of the window read (exclusive): when the run read it."""


class DatasetStatus(ApiModel):
    """Observed state of a Dataset."""

    phase: Literal["Pending", "Validating", "Ready", "Failed"] = "Pending"
    """Lifecycle phase."""
    observed_generation: int = 0
    """Generation last reconciled."""
    conditions: list[Condition] = conditions_field()
    """kstatus conditions."""
    rows: int | None = None
    """Rows read."""
    columns: int | None = None
    """Columns read."""
    fingerprint: Annotated[str, Field(max_length=80)] | None = None
    """sha256 of the data's content."""
    findings: Annotated[list[Finding], Field(max_length=200)] = Field(default_factory=list)
    """Validation findings with counts."""
    profile_uri: Annotated[str, Field(max_length=2048)] | None = None
    """Where the profile (bins and proportions per column) was written."""
    target: ColumnName | None = None
    """The target column."""
    task: Literal["classification", "regression"] | None = None
    """The task a TrainingJob without `spec.task` trains on this data, inferred from the
    target (categories, booleans and at most 20 distinct integers are classes)."""
    summary: Annotated[list[ColumnSummary], Field(max_length=1000)] = Field(default_factory=list)
    """Per column: type, missing, distinct values, range; the target first. On Kubernetes
    the list may be cut short to fit the run's 4 KiB termination message."""
    snapshot: Snapshot | None = None
    """For a source read as a snapshot (`logs://`): where the rows were materialised and what
    went into them; TrainingJobs train on this file."""
    last_profiled_time: Timestamp | None = None
    """When the data was last read."""
    refresh_request: Annotated[str, Field(max_length=64)] | None = None
    """The DriftMonitor's request for a fresh snapshot (before a retrain) that the latest
    profiling run answers."""
    run: Annotated[str, Field(max_length=253)] | None = None
    """Name of the profiling run in progress or last finished."""


class Dataset(Resource):
    """A data set: source, target, schema and split."""

    KIND: ClassVar[str] = "Dataset"
    PLURAL: ClassVar[str] = "datasets"
    # not "ds": kubectl resolves that to DaemonSets on every cluster, built-ins first
    SHORT_NAMES: ClassVar[list[str]] = ["dset"]
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="Rows", type="integer", json_path=".status.rows"),
        PrinterColumn(name="Columns", type="integer", json_path=".status.columns"),
        PrinterColumn(name="Source", type="string", json_path=".spec.source.uri", priority=1),
        PrinterColumn(
            name="Fingerprint", type="string", json_path=".status.fingerprint", priority=1
        ),
        age_column(),
    ]

    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec
    status: DatasetStatus | None = None


__all__ = [
    "BaseData",
    "ColumnSchema",
    "ColumnSummary",
    "DataSource",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "Finding",
    "InferenceLogs",
    "Name",
    "Snapshot",
    "Split",
]
