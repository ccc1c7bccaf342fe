"""The envelope every Pilotage object shares: apiVersion, kind, metadata, spec, status."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pilotage.api.common import API_VERSION, ObjectMeta


class PrinterColumn(BaseModel):
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0


class Resource(BaseModel):
    """Base of Dataset, TrainingJob, ModelDeployment and DriftMonitor."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[list[str]]
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]]

    api_version: str = Field(default=API_VERSION, alias="apiVersion", pattern=f"^{API_VERSION}$")
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def generation(self) -> int:
        return self.metadata.generation or 1

    def dump(self) -> dict[str, Any]:
        """The object as YAML/JSON would hold it (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def age_column() -> PrinterColumn:
    return PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp")
