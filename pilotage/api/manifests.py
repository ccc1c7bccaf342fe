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

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls for cls in (Dataset, TrainingJob, ModelDeployment, DriftMonitor)
}


class ManifestError(ValueError):
    """A manifest that is not a valid Pilotage resource; the message names the field."""


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


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line report as one line: ``line 2, column 11: expected ',' or '}'``."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = "; ".join(str(p) for p in (exc.context, exc.problem) if p) or "not valid"
    return where + what


def read_manifest_text(path: str | Path) -> str:
    """A manifest file's text; a file that cannot be read or is not UTF-8 is a ManifestError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not a text file (byte {exc.start} is not UTF-8); manifests are YAML"
        ) from exc


def load_documents(text: str, source: str = "<input>") -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {yaml_problem(exc)}") from exc
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
