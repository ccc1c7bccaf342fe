"""Where the checked-in CRDs, examples and invalid manifests are, loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
EXAMPLES_DIR = ROOT / "examples"
INVALID_DIR = Path(__file__).resolve().parent / "invalid"


def load_crds() -> dict[str, dict[str, Any]]:
    """Kind → CRD object, from crds/."""
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int
    doc: dict[str, Any]

    @property
    def id(self) -> str:
        return (
            f"{self.path.name}#{self.index}:{self.doc.get('kind')}/{self.doc['metadata']['name']}"
        )


def example_manifests() -> list[Manifest]:
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        out += [Manifest(path, i, doc) for i, doc in enumerate(docs)]
    return out


@dataclass(frozen=True)
class InvalidManifest:
    path: Path
    field: str
    why: str
    doc: dict[str, Any]


def invalid_manifests() -> list[InvalidManifest]:
    """Each file in invalid/ holds one manifest and names, in a `# field:` comment,
    the field a rejection must name."""
    out = []
    for path in sorted(INVALID_DIR.glob("*.yaml")):
        text = path.read_text()
        header = dict(
            line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# ")
        )
        out.append(
            InvalidManifest(path, header["field"], header.get("why", ""), yaml.safe_load(text))
        )
    return out


def names_field(message: str, field: str) -> bool:
    """Whether an error message points at exactly this field (not a parent or child)."""
    return f"{field}:" in message or f'"{field}"' in message
