"""Reading manifests: YAML documents → typed resources, with errors that name the field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pilotage.api.common import API_VERSION
from pilotage.api.dataset import Dataset
from pilotage.api.driftmonitor import DriftMonitor
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.api.resource import Resource
from pilotage.api.trainingjob import TrainingJob
from pilotage.safeyaml import (
    DEFAULT_MAX_BYTES,
    MAX_BYTES_ENV,
    MAX_DEPTH,
    ManifestError,
    check_expansion,
    max_manifest_bytes,
    read_limited,
    safe_load,
    safe_load_all,
    yaml_problem,
)

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls for cls in (Dataset, TrainingJob, ModelDeployment, DriftMonitor)
}
KIND_ORDER: tuple[str, ...] = tuple(KINDS)
"""The kinds in the order they are applied and listed: each one refers only to earlier ones."""

__all__ = [
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "KIND_ORDER",
    "MAX_BYTES_ENV",
    "MAX_DEPTH",
    "ManifestError",
    "check_expansion",
    "format_validation_error",
    "load_documents",
    "load_resources",
    "max_manifest_bytes",
    "parse_resource",
    "read_limited",
    "read_manifest_text",
    "safe_load",
    "safe_load_all",
    "yaml_problem",
]


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        loc = _location(tuple(p for p in err["loc"] if not str(p).startswith("function-")))
        where = ".".join(x for x in (prefix, loc) if x)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_resource(doc: dict[str, Any], source: str = "") -> Resource:
    """Validate one manifest dictionary into its resource class."""
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: a manifest must be a mapping, got {type(doc).__name__}")
    kind = doc.get("kind")
    where = f"{source}: " if source else ""
    if kind not in KINDS:
        raise ManifestError(
            f"{where}kind: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    if doc.get("apiVersion") != API_VERSION:
        raise ManifestError(
            f"{where}apiVersion: expected {API_VERSION!r}, got {doc.get('apiVersion')!r}"
        )
    name = (doc.get("metadata") or {}).get("name", "?")
    try:
        return KINDS[kind].model_validate(doc)
    except ValidationError as exc:
        raise ManifestError(f"{where}{kind}/{name}: {format_validation_error(exc)}") from exc


def read_manifest_text(path: str | Path) -> str:
    """A manifest file's text; a file that cannot be read or is not UTF-8 is a ManifestError.

    Only regular files of at most max_manifest_bytes() are read (read_limited).
    """
    try:
        raw = read_limited(path, max_manifest_bytes())
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ManifestError(f"{path}: {exc} ({MAX_BYTES_ENV})") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not a text file (byte {exc.start} is not UTF-8); manifests are YAML"
        ) from exc


def load_documents(text: str, source: str = "<input>") -> list[dict[str, Any]]:
    try:
        docs = [d for d in safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {yaml_problem(exc)}") from exc
    except ManifestError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    return docs


def load_resources(paths: Iterable[str | Path]) -> list[Resource]:
    """Every Pilotage resource in the given files or directories (*.yaml, *.yml, *.json)."""
    out: list[Resource] = []
    for p in paths:
        path = Path(p)
        files = (
            sorted(f for f in path.rglob("*") if f.suffix in (".yaml", ".yml", ".json"))
            if path.is_dir()
            else [path]
        )
        for f in files:
            for i, doc in enumerate(load_documents(read_manifest_text(f), str(f))):
                out.append(parse_resource(doc, f"{f}#{i}"))
    return out
