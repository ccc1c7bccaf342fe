"""The model card (`model.json`) that travels beside every `model.onnx`.

It is the contract between the trainer (which writes it), the model server (which
reads it to validate requests, name outputs and count drift bins) and the control
plane (which reads version, metrics and gates).

Binning convention, shared by the trainer, the server and the drift statistics:

* numeric feature with inner edges ``e[0] < ... < e[k-2]`` has ``k`` bins; a value
  ``x`` falls in bin ``numpy.searchsorted(edges, x, side="right")`` (so bin 0 is
  ``x < e[0]`` and bin ``k-1`` is ``x >= e[k-2]``); a null goes to the separate
  ``null`` count;
* categorical feature with categories ``c[0..k-1]`` has ``k + 1`` bins: one per
  category, then ``__other__`` for anything unseen in training; nulls as above.

Metric label ``bin`` is the bin index as a decimal string for numeric features,
the category itself for categorical ones, ``__other__`` and ``null``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OTHER_BIN = "__other__"
NULL_BIN = "null"
MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
CARD_SCHEMA_VERSION = 1

FeatureType = Literal["float", "int", "category", "bool"]
Task = Literal["classification", "regression"]


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FeatureInfo(_Card):
    name: str
    type: FeatureType
    nullable: bool = True
    categories: list[str] | None = None
    min: float | None = None
    max: float | None = None


class TensorInfo(_Card):
    name: str
    datatype: str = Field(description="V2 datatype: FP32, INT64, BYTES, ...")
    shape: list[int] = Field(description="-1 for a dynamic dimension")


class OnnxInfo(_Card):
    file: str = Field(
        default=MODEL_FILE,
        description="the graph's file name inside the model directory (no path)",
    )
    sha256: str
    opset: int
    input_layout: Literal["matrix", "columns"] = Field(
        alias="inputLayout",
        description="matrix: one FP32 [N, F] input named in `inputs[0]`; "
        "columns: one [N, 1] input per feature, named after the feature",
    )
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    label_output: str = Field(alias="labelOutput", description="predicted class or value")
    probabilities_output: str | None = Field(default=None, alias="probabilitiesOutput")

    @field_validator("file")
    @classmethod
    def _a_file_name(cls, value: str) -> str:
        if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
            raise ValueError(f"must be a file name inside the model directory, got {value!r}")
        return value


class NumericProfile(_Card):
    kind: Literal["numeric"] = "numeric"
    edges: list[float]
    proportions: list[float]
    null_rate: float = Field(default=0.0, alias="nullRate")
    mean: float | None = None
    std: float | None = None


class CategoricalProfile(_Card):
    kind: Literal["categorical"] = "categorical"
    categories: list[str]
    proportions: list[float] = Field(description="one per category, then __other__")
    null_rate: float = Field(default=0.0, alias="nullRate")


FeatureProfile = NumericProfile | CategoricalProfile


SampleValue = float | str | None


class BaselineSample(_Card):
    """Training rows drawn at random for the exact drift tests (KS, Wasserstein on samples).

    ``columns`` are feature names (card order), each row one value per column: numbers
    as float32 values in their shortest decimal form (what the server sees), categories
    as strings, ``null`` for a missing (or non-finite) value.
    """

    columns: list[str]
    rows: list[list[SampleValue]]


class Baseline(_Card):
    rows: int
    features: dict[str, NumericProfile | CategoricalProfile]
    predictions: NumericProfile | CategoricalProfile
    sample: BaselineSample | None = Field(
        default=None, description="a bounded random sample of training rows (optional)"
    )


class DatasetInfo(_Card):
    name: str
    uri: str
    fingerprint: str
    rows: int


class ParityInfo(_Card):
    max_abs_diff: float = Field(alias="maxAbsDiff")
    label_agreement: float = Field(alias="labelAgreement")
    rows: int


class ModelCard(_Card):
    schema_version: int = Field(default=CARD_SCHEMA_VERSION, alias="schemaVersion")
    name: str
    version: str
    task: Task
    algorithm: str
    features: list[FeatureInfo]
    target: str
    classes: list[str | int] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    gates: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetInfo
    created: str = Field(description="RFC 3339 time the model was trained")
    libraries: dict[str, str] = Field(default_factory=dict)
    onnx: OnnxInfo
    parity: ParityInfo | None = None
    baseline: Baseline

    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> str:
        sample = self.baseline.sample
        if sample is None:
            return self.model_dump_json(by_alias=True, exclude_none=True, indent=2)
        # One line per sample row: indenting every value would make the card ~3x larger.
        text = self.model_copy(
            update={
                "baseline": self.baseline.model_copy(
                    update={"sample": sample.model_copy(update={"rows": []})}
                )
            }
        ).model_dump_json(by_alias=True, exclude_none=True, indent=2)
        head, _, tail = text.rpartition('"rows": []')
        indent = head[head.rfind("\n") + 1 :]
        rows = ",\n".join(
            f"{indent}  {json.dumps(row, ensure_ascii=False, allow_nan=False)}"
            for row in sample.rows
        )
        return f'{head}"rows": [\n{rows}\n{indent}]{tail}' if rows else text

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        return cls.model_validate_json(text)
