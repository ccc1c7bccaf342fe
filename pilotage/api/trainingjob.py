"""TrainingJob: one training run producing one model version."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator

from pilotage.api.common import (
    ApiModel,
    Condition,
    LocalObjectReference,
    ResourceRequirements,
    ShortText,
    Timestamp,
    cel_rules,
    conditions_field,
)
from pilotage.api.dataset import Snapshot
from pilotage.api.resource import PrinterColumn, Resource, age_column

Algorithm = Literal[
    "logistic_regression",
    "random_forest",
    "gradient_boosting",
    "hist_gradient_boosting",
    "decision_tree",
    "linear_regression",
    "ridge",
]
ClassificationMetric = Literal[
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "roc_auc",
    "log_loss",
]
RegressionMetric = Literal["mae", "mse", "rmse", "r2"]
MetricName = Literal[ClassificationMetric, RegressionMetric]
CLASSIFICATION_METRICS: tuple[str, ...] = get_args(ClassificationMetric)
REGRESSION_METRICS: tuple[str, ...] = get_args(RegressionMetric)

# The keyword arguments each algorithm's scikit-learn estimator takes, per task, so that the
# control plane can refuse a misspelled hyperparameter before any run starts. A trainer test
# checks this table against the installed scikit-learn.
ALGORITHM_PARAMETERS: dict[str, dict[str, frozenset[str]]] = {
    "logistic_regression": {
        "classification": frozenset(
            {
                "C",
                "class_weight",
                "dual",
                "fit_intercept",
                "intercept_scaling",
                "l1_ratio",
                "max_iter",
                "multi_class",
                "n_jobs",
                "penalty",
                "random_state",
                "solver",
                "tol",
                "verbose",
                "warm_start",
            }
        ),
    },
    "random_forest": {
        "classification": frozenset(
            {
                "bootstrap",
                "ccp_alpha",
                "class_weight",
                "criterion",
                "max_depth",
                "max_features",
                "max_leaf_nodes",
                "max_samples",
                "min_impurity_decrease",
                "min_samples_leaf",
                "min_samples_split",
                "min_weight_fraction_leaf",
                "monotonic_cst",
                "n_estimators",
                "n_jobs",
                "oob_score",
                "random_state",
                "verbose",
                "warm_start",
            }
        ),
        "regression": frozenset(
            {
                "bootstrap",
                "ccp_alpha",
                "criterion",
                "max_depth",
                "max_features",
                "max_leaf_nodes",
                "max_samples",
                "min_impurity_decrease",
                "min_samples_leaf",
                "min_samples_split",
                "min_weight_fraction_leaf",
                "monotonic_cst",
                "n_estimators",
                "n_jobs",
                "oob_score",
                "random_state",
                "verbose",
                "warm_start",
            }
        ),
    },
    "gradient_boosting": {
        "classification": frozenset(
            {
                "ccp_alpha",
                "criterion",
                "init",
                "learning_rate",
                "loss",
                "max_depth",
                "max_features",
                "max_leaf_nodes",
                "min_impurity_decrease",
                "min_samples_leaf",
                "min_samples_split",
                "min_weight_fraction_leaf",
                "n_estimators",
                "n_iter_no_change",
                "random_state",
                "subsample",
                "tol",
                "validation_fraction",
                "verbose",
                "warm_start",
            }
        ),
        "regression": frozenset(
            {
                "alpha",
                "ccp_alpha",
                "criterion",
                "init",
                "learning_rate",
                "loss",
                "max_depth",
                "max_features",
                "max_leaf_nodes",
                "min_impurity_decrease",
                "min_samples_leaf",
                "min_samples_split",
                "min_weight_fraction_leaf",
                "n_estimators",
                "n_iter_no_change",
                "random_state",
                "subsample",
                "tol",
                "validation_fraction",
                "verbose",
                "warm_start",
            }
        ),
    },
    "hist_gradient_boosting": {
        "classification": frozenset(
            {
                "categorical_features",
                "class_weight",
                "early_stopping",
                "interaction_cst",
                "l2_regularization",
                "learning_rate",
                "loss",
                "max_bins",
                "max_depth",
                "max_features",
                "max_iter",
                "max_leaf_nodes",
                "min_samples_leaf",
                "monotonic_cst",
                "n_iter_no_change",
                "random_state",
                "scoring",
                "tol",
                "validation_fraction",
                "verbose",
                "warm_start",
            }
        ),
        "regression": frozenset(
            {
                "categorical_features",
                "early_stopping",
                "interaction_cst",
                "l2_regularization",
                "learning_rate",
                "loss",
                "max_bins",
                "max_depth",
                "max_features",
                "max_iter",
                "max_leaf_nodes",
                "min_samples_leaf",
                "monotonic_cst",
                "n_iter_no_change",
                "quantile",
                "random_state",
                "scoring",
                "tol",
                "validation_fraction",
                "verbose",
                "warm_start",
            }
        ),
    },
    "decision_tree": {
        "classification": frozenset(
            {
                "ccp_alpha",
                "class_weight",
                "criterion",
                "max_depth",
                "max_features",
                "max_leaf_nodes",
                "min_impurity_decrease",
                "min_samples_leaf",
                "min_samples_split",
                "min_weight_fraction_leaf",
                "monotonic_cst",
                "random_state",
                "splitter",
            }
        ),
        "regression": frozenset(
            {
                "ccp_alpha",
                "criterion",
                "max_depth",
                "max_features",
                "max_leaf_nodes",
                "min_impurity_decrease",
                "min_samples_leaf",
                "min_samples_split",
                "min_weight_fraction_leaf",
                "monotonic_cst",
                "random_state",
                "splitter",
            }
        ),
    },
    "linear_regression": {
        "regression": frozenset({"copy_X", "fit_intercept", "n_jobs", "positive", "tol"}),
    },
    "ridge": {
        "regression": frozenset(
            {
                "alpha",
                "copy_X",
                "fit_intercept",
                "max_iter",
                "positive",
                "random_state",
                "solver",
                "tol",
            }
        ),
    },
}


class ModelSpec(ApiModel):
    """The estimator to fit."""

    algorithm: Algorithm
    """Estimator family; `*_regression`/`ridge` are regressors except `logistic_regression`,
    tree ensembles pick classifier or regressor from the task."""
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Keyword arguments of the scikit-learn estimator, e.g. `{C: 0.5, max_iter: 200}`."""


class ImputeSpec(ApiModel):
    """How missing values are filled."""

    numeric: Literal["mean", "median", "most_frequent", "constant"] = "median"
    """Strategy for numeric columns."""
    categorical: Literal["most_frequent", "constant"] = "constant"
    """Strategy for category columns (`constant` fills with `missing`)."""


class PreprocessingSpec(ApiModel):
    """The preprocessing steps, exported to ONNX in the same graph as the model."""

    impute: ImputeSpec = Field(default_factory=ImputeSpec)
    """Missing-value imputation."""
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"
    """Scaling of numeric columns."""
    one_hot: bool = True
    """One-hot encode category columns (unknown categories are ignored at prediction)."""
    max_categories: Annotated[int, Field(ge=2, le=1000)] = 50
    """Rarer categories beyond this many are grouped."""


class SearchSpec(ApiModel):
    """Hyperparameter search with cross-validation."""

    type: Literal["grid", "random"] = "grid"
    """Grid tries every combination; random samples `maxTrials` of them."""
    parameters: dict[str, list[Any]] = Field(
        default_factory=dict,
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
        },
    )
    """Candidate values per hyperparameter, e.g. `{C: [0.1, 1, 10]}`."""
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 5
    """Cross-validation folds."""
    metric: MetricName | None = None
    """Metric to maximise (minimise for errors); accuracy or r2 by default."""
    max_trials: Annotated[int, Field(ge=1, le=1000)] = 20
    """Upper bound on the candidates evaluated."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Seed of random search."""


class Gate(ApiModel):
    """A bound a metric must meet for the model to be deployable."""

    model_config = cel_rules(
        ("has(self.min) || has(self.max)", "a gate sets min, max or both"),
        (
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "a gate's min must not be greater than its max",
        ),
    )

    metric: MetricName
    """Metric checked on the test split."""
    min: float | None = None
    """Smallest acceptable value."""
    max: float | None = None
    """Largest acceptable value."""

    @model_validator(mode="after")
    def _bound(self) -> Gate:
        if self.min is None and self.max is None:
            raise ValueError(f"gate on {self.metric}: set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"gate on {self.metric}: min {self.min} is greater than max {self.max}"
            )
        return self


class Champion(ApiModel):
    """A model the new one must be at least as good as (a deployment's stable version)."""

    uri: Annotated[str, Field(max_length=2048, pattern=r"^(file|pvc|s3)://.+$")]
    """The champion's model directory (model.onnx + model.json)."""
    version: Annotated[str, Field(max_length=63)] | None = None
    """Its version, for the status and Events."""
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """How much worse than the champion the new model may score on each compared metric
    (absolute: 0.01 lets accuracy 0.67 pass against 0.68)."""


class EvaluationSpec(ApiModel):
    """What is measured on the test split and what must hold."""

    metrics: Annotated[list[MetricName], Field(max_length=16)] = Field(default_factory=list)
    """Metrics to report; all metrics of the task when empty."""
    gates: Annotated[list[Gate], Field(max_length=16)] = Field(default_factory=list)
    """Gates; a model failing any of them is never deployed."""
    champion: Champion | None = None
    """Score this model too on the same test rows; the new model passes its gates only if it
    is at least as good on every gate metric (accuracy or r2 without gates), within
    `margin`. A DriftMonitor's retrain names the deployment's stable version here."""


class OutputSpec(ApiModel):
    """Where the model directory is written."""

    uri: Annotated[str, Field(max_length=2048, pattern=r"^(file|pvc|s3)://.+$")] | None = None
    """Base URI; the model goes to `<uri>/<namespace>/<name>/<version>`.
    The operator's default artifact store when absent."""


class TrainingJobSpec(ApiModel):
    """Desired state of a TrainingJob."""

    dataset_ref: LocalObjectReference
    """The Dataset to train on."""
    task: Literal["classification", "regression"] | None = None
    """Inferred from the target when absent (a float target with many values is regression)."""
    model: ModelSpec
    """The estimator."""
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    """Imputation, scaling, one-hot encoding."""
    search: SearchSpec | None = None
    """Optional hyperparameter search."""
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    """Metrics and gates."""
    output: OutputSpec = Field(default_factory=OutputSpec)
    """Artifact location."""
    model_name: Annotated[str, Field(max_length=63)] | None = None
    """Name of the served model; the Dataset's name when absent."""
    version: (
        Annotated[str, Field(max_length=63, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")] | None
    ) = None
    """Model version; the TrainingJob's name when absent."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Random seed of the estimator: the same spec, data and seed give the same model bytes."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Resources of the training pod."""
    backoff_limit: Annotated[int, Field(ge=0, le=10)] = 2
    """Retries after a failed attempt."""
    active_deadline_seconds: Annotated[int, Field(ge=1, le=604800)] | None = None
    """Wall-clock limit of the whole run, all attempts included."""


class GateResult(ApiModel):
    metric: Annotated[str, Field(max_length=64)]
    """Metric checked."""
    value: float | None = None
    """Measured value."""
    min: float | None = None
    """Bound."""
    max: float | None = None
    """Bound."""
    passed: bool
    """Whether the bound holds."""


class ChampionResult(ApiModel):
    """The new model against `spec.evaluation.champion`, on the same test rows."""

    version: Annotated[str, Field(max_length=63)] | None = None
    """The champion's version."""
    uri: Annotated[str, Field(max_length=2048)]
    """The champion's model directory."""
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)
    """The champion's scores on the test split (the new model's are `status.metrics`)."""
    margin: float = 0.0
    """The margin allowed."""
    passed: bool | None = None
    """Whether the new model is at least as good; None when the champion could not be
    scored (then only the gates judge)."""
    message: ShortText = ""
    """The comparison, or why there was none."""


class GatesStatus(ApiModel):
    passed: bool
    """True when every gate passed (or there are none)."""
    results: Annotated[list[GateResult], Field(max_length=16)] = Field(default_factory=list)
    """Per gate."""


class OnnxParity(ApiModel):
    max_abs_diff: float
    """Largest absolute difference between scikit-learn and onnxruntime on the test split."""
    label_agreement: float
    """Share of test rows where both predict the same label (1.0 for regression)."""


class SearchResult(ApiModel):
    """What the hyperparameter search chose."""

    best_parameters: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """The chosen value of each searched hyperparameter."""
    best_score: float | None = None
    """Mean cross-validation score of the chosen candidate (errors are negated, as
    scikit-learn scores them: higher is better)."""
    scoring: Annotated[str, Field(max_length=64)] = ""
    """The scikit-learn scorer used, e.g. `f1_weighted`, `neg_root_mean_squared_error`."""
    trials: Annotated[int, Field(ge=0)] = 0
    """Candidates evaluated."""
    folds: Annotated[int, Field(ge=0)] = 0
    """Cross-validation folds per candidate."""


class TrainingJobStatus(ApiModel):
    """Observed state of a TrainingJob."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed"] = "Pending"
    """Lifecycle phase."""
    observed_generation: int = 0
    """Generation last reconciled."""
    conditions: list[Condition] = conditions_field()
    """kstatus conditions."""
    model_version: Annotated[str, Field(max_length=63)] | None = None
    """Version of the produced model."""
    model_uri: Annotated[str, Field(max_length=2048)] | None = None
    """URI of the model directory (model.onnx + model.json)."""
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)
    """Evaluation metrics on the test split."""
    gates: GatesStatus | None = None
    """Gate results."""
    onnx_parity: OnnxParity | None = None
    """scikit-learn vs onnxruntime agreement."""
    search: SearchResult | None = None
    """The search's chosen hyperparameters and score (with `spec.search`)."""
    task: Literal["classification", "regression"] | None = None
    """The task trained: `spec.task`, or the one inferred from the Dataset's target."""
    attempts: int = 0
    """Attempts started."""
    run: Annotated[str, Field(max_length=253)] | None = None
    """Name of the current or last run (a Job on Kubernetes)."""
    run_generation: int | None = None
    """Generation the current run trains; a run is never started twice for one generation."""
    dataset_fingerprint: Annotated[str, Field(max_length=80)] | None = None
    """Fingerprint of the data the model was trained on."""
    champion: ChampionResult | None = None
    """The comparison with `spec.evaluation.champion`: both scores and the verdict."""
    dataset_snapshot: Snapshot | None = None
    """The Dataset's snapshot the model learned from (a `logs://` Dataset): the Parquet file,
    its rows (logged, labelled, base) and the window of logs it holds."""
    start_time: Timestamp | None = None
    """When the first attempt started."""
    completion_time: Timestamp | None = None
    """When the run succeeded or finally failed."""
    message: ShortText = ""
    """Last failure or outcome, in one line."""


class TrainingJob(Resource):
    """A training run that fits a pipeline, checks it, exports it to ONNX."""

    KIND: ClassVar[str] = "TrainingJob"
    PLURAL: ClassVar[str] = "trainingjobs"
    SHORT_NAMES: ClassVar[list[str]] = ["tj"]
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="Version", type="string", json_path=".status.modelVersion"),
        PrinterColumn(name="Algorithm", type="string", json_path=".spec.model.algorithm"),
        PrinterColumn(name="Gates", type="boolean", json_path=".status.gates.passed"),
        PrinterColumn(
            name="Accuracy", type="number", json_path=".status.metrics.accuracy", priority=1
        ),
        PrinterColumn(name="R2", type="number", json_path=".status.metrics.r2", priority=1),
        PrinterColumn(name="Attempts", type="integer", json_path=".status.attempts", priority=1),
        age_column(),
    ]

    kind: Literal["TrainingJob"] = "TrainingJob"
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None

    @property
    def version(self) -> str:
        return self.spec.version or self.metadata.name
