"""Building blocks shared by the four resources: base models, durations, metadata, conditions."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "pilotage.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# The format hints (not descriptions) leave each field's own docstring as its description;
# the CRD generator appends the hint to it.
Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        json_schema_extra={"x-pilotage-format": "duration"},
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=253)]
ShortText = Annotated[str, Field(max_length=1024)]
LongText = Annotated[str, Field(max_length=32768)]
Timestamp = Annotated[
    str, Field(max_length=64, json_schema_extra={"x-pilotage-format": "timestamp"})
]


def parse_duration(value: str) -> float:
    """Seconds in a duration string like ``1h30m`` or ``250ms``."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 30s, 5m, 1h")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))


def cel_rules(*rules: tuple[str, str]) -> ConfigDict:
    """Model config carrying CEL rules (`x-kubernetes-validations`) into the CRD schema."""
    return ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": rule, "message": msg} for rule, msg in rules]
        }
    )


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase in YAML, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=False,
        use_attribute_docstrings=True,
    )

    def dump(self) -> dict[str, Any]:
        """The object as it appears in a manifest (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ObjectMeta that Pilotage reads; other keys are kept as-is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None


class LocalObjectReference(ApiModel):
    """A reference to another resource in the same namespace."""

    name: Name
    """Name of the referenced resource."""


class LabelSelectorRequirement(ApiModel):
    """One set-based label requirement."""

    model_config = cel_rules(
        (
            "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0"
            " : !has(self.values) || size(self.values) == 0",
            "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
        )
    )

    key: Annotated[str, Field(max_length=317)]
    """Label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    """Values for In / NotIn; empty for Exists / DoesNotExist."""

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        wants_values = self.operator in ("In", "NotIn")
        if wants_values and not self.values:
            raise ValueError(f"values must be non-empty for operator {self.operator}")
        if not wants_values and self.values:
            raise ValueError(f"values must be empty for operator {self.operator}")
        return self


class LabelSelector(ApiModel):
    """A Kubernetes label selector; all requirements must match."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=64
    )
    """Labels that must all be present with these values."""
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] = Field(
        default_factory=list
    )
    """Set-based requirements."""

    def matches(self, labels: dict[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


Quantity = Annotated[str, Field(max_length=32, pattern=r"^[0-9.]+([eE][0-9]+|[a-zA-Z]{1,2})?$")]


class ResourceRequirements(ApiModel):
    """CPU and memory for a pod's container, as in Kubernetes (`cpu: 500m`, `memory: 1Gi`)."""

    requests: dict[Literal["cpu", "memory", "ephemeral-storage"], Quantity] = Field(
        default_factory=dict
    )
    """Guaranteed resources."""
    limits: dict[Literal["cpu", "memory", "ephemeral-storage"], Quantity] = Field(
        default_factory=dict
    )
    """Maximum resources."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A kstatus condition. `Ready` is always present; `Reconciling` and `Stalled` only while True."""

    type: Annotated[str, Field(max_length=64)]
    """Ready, Reconciling, Stalled (or a kind-specific type)."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[str, Field(max_length=128)] = ""
    """CamelCase reason, e.g. `Succeeded`, `RolledBack`, `InvalidSpec`."""
    message: ShortText = ""
    """Human-readable detail."""
    last_transition_time: Timestamp = ""
    """When `status` last changed."""
    observed_generation: int = 0
    """The `metadata.generation` this condition was computed from."""


def conditions_field() -> Any:
    # A list map keyed by type: server-side apply merges conditions by type and the
    # API server rejects two conditions of one type.
    return Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
