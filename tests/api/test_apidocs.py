"""docs/api.md is generated from the models and documents every field and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotage.api import apidocs
from pilotage.api.manifests import KINDS
from tests.api.files import ROOT, load_crds

API_MD = ROOT / "docs" / "api.md"


def test_api_md_is_the_generated_one() -> None:
    assert API_MD.read_text() == apidocs.render(), (
        "docs/api.md is stale: run `python -m pilotage.api.apidocs`"
    )


def _field_paths(node: dict, prefix: str = "") -> list[str]:
    if node.get("type") == "array":
        return _field_paths(node.get("items", {}), f"{prefix}[]")
    if "additionalProperties" in node:
        return _field_paths(node["additionalProperties"], f"{prefix}.*")
    out = []
    for name, prop in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        out += [path, *_field_paths(prop, path)]
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_field_and_column_is_documented(kind: str) -> None:
    text = apidocs.render()
    section = text.split(f"## {kind}\n", 1)[1].split("\n## ", 1)[0]
    version = load_crds()[kind]["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert f"`kubectl get {KINDS[kind].SHORT_NAMES[0]}`" in section
    for column in version["additionalPrinterColumns"]:
        assert f"| {column['name']} | {column['type']} | `{column['jsonPath']}` |" in section
    status = section.split(f"### {kind} `status`", 1)[1]
    spec = section.split(f"### {kind} `status`", 1)[0]
    for part, body in (("spec", spec), ("status", status)):
        for path in _field_paths(schema["properties"][part]):
            if ".onDrift.retrain.template.spec." in f".{path}":
                continue  # documented once, under TrainingJob
            assert f"| `{path}` |" in body, f"{kind} {part}.{path} is not documented"
    for rule in _rules_of(schema):
        assert rule in section


def _rules_of(node: dict, path: str = "") -> list[str]:
    if path.endswith(".template.spec"):
        return []  # a TrainingJob spec, documented under TrainingJob
    found = [r["message"] for r in node.get("x-kubernetes-validations", [])]
    for name, child in node.get("properties", {}).items():
        found += _rules_of(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _rules_of(node[key], path)
    return found


def test_check_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "api.md"
    assert apidocs.main(["--output", str(out), "--check"]) == 1
    assert apidocs.main(["--output", str(out)]) == 0
    assert apidocs.main(["--output", str(out), "--check"]) == 0
    out.write_text(out.read_text() + "edited\n")
    assert apidocs.main(["--output", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
