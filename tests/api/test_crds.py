"""The checked-in CRDs: generated from the models, structural, named as documented."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from pilotage.api import crd as crdgen
from pilotage.api.manifests import KINDS
from tests.api.files import CRD_DIR, ROOT, load_crds
from tests.api.structural import crd_violations, schema_violations
from tests.support.procs import pilotage

CRDS = load_crds()


def test_checked_in_crds_are_the_generated_ones() -> None:
    stale = crdgen.stale_files(CRD_DIR, crdgen.generate())
    assert stale == [], "crds/ is stale: run `pilotage crds`\n" + "\n".join(stale)


def test_one_crd_per_kind() -> None:
    assert sorted(CRDS) == sorted(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_is_structural(kind: str) -> None:
    assert crd_violations(CRDS[kind]) == []


@pytest.mark.parametrize(
    ("kind", "short_name", "columns"),
    [
        ("Dataset", "dset", ["Phase", "Rows", "Age"]),
        ("TrainingJob", "tj", ["Phase", "Version", "Gates", "Age"]),
        ("ModelDeployment", "md", ["Phase", "Stable", "Candidate", "Traffic", "P99ms", "Age"]),
        ("DriftMonitor", "dm", ["Phase", "Samples", "Drift", "Age"]),
    ],
)
def test_names_scope_subresource_and_columns(
    kind: str, short_name: str, columns: list[str]
) -> None:
    spec = CRDS[kind]["spec"]
    assert spec["group"] == "pilotage.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == [short_name]
    assert spec["names"]["categories"] == ["pilotage"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    shown = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    for column in columns:
        assert column in shown


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_printer_columns_point_at_declared_fields(kind: str) -> None:
    version = CRDS[kind]["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata."):
            continue
        node: Any = schema
        for part in path.strip(".").split("."):
            node = node.get("properties", {}).get(part) or node.get("additionalProperties")
            assert node is not None, f"{column['name']}: {path} is not declared"
        expected = {"date": "string"}.get(column["type"], column["type"])
        assert node["type"] == expected, f"{column['name']}: {path} is {node['type']}"


def test_spec_required_fields_and_status_phase_enum() -> None:
    md = CRDS["ModelDeployment"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert md["required"] == ["spec"]
    assert md["properties"]["spec"]["required"] == ["model"]
    assert md["properties"]["status"]["properties"]["phase"]["enum"] == [
        "Pending",
        "Progressing",
        "Paused",
        "Healthy",
        "Degraded",
    ]
    assert md["properties"]["status"]["properties"]["observedGeneration"]["type"] == "integer"
    conditions = md["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


# Each schema breaks one structural or CEL-cost rule; the checker must say so.
NON_STRUCTURAL: list[tuple[str, dict[str, Any], str]] = [
    ("ref", {"$ref": "#/$defs/X"}, "$ref is forbidden"),
    ("nullable-anyOf", {"anyOf": [{"type": "string"}, {"type": "null"}]}, "type inside anyOf"),
    ("no-type", {"description": "x"}, "type is missing"),
    ("property-names", {"type": "object", "propertyNames": {"enum": ["a"]}}, "propertyNames"),
    (
        "additional-false",
        {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
        "additionalProperties must be a schema",
    ),
    ("unbounded-string", {"type": "string"}, "string without maxLength"),
    ("unbounded-list", {"type": "array", "items": {"type": "integer"}}, "list without maxItems"),
    (
        "unbounded-map",
        {"type": "object", "additionalProperties": {"type": "integer"}},
        "map without maxProperties",
    ),
    ("numeric-exclusive", {"type": "number", "exclusiveMinimum": 0}, "must be a boolean"),
    (
        "unique-items",
        {"type": "array", "maxItems": 2, "uniqueItems": True, "items": {"type": "integer"}},
        "uniqueItems",
    ),
    (
        "unknown-cel-function",
        {
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.frobnicate()", "message": "m"}],
        },
        "functions Kubernetes CEL lacks",
    ),
    (
        "cel-syntax",
        {"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==", "message": "m"}]},
        "does not compile",
    ),
    (
        "list-map-key-optional",
        {
            "type": "array",
            "maxItems": 4,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": {"type": {"type": "string", "maxLength": 8}}},
        },
        "must be required or defaulted",
    ),
    ("bad-default", {"type": "integer", "maximum": 3, "default": 5}, "does not validate"),
]


@pytest.mark.parametrize(
    ("field", "message"),
    [(f, m) for _, f, m in NON_STRUCTURAL],
    ids=[n for n, _, _ in NON_STRUCTURAL],
)
def test_checker_rejects_non_structural_schemas(field: dict[str, Any], message: str) -> None:
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"f": field}}},
    }
    violations = schema_violations(schema)
    assert any(message in v and ".spec.f" in v for v in violations), violations


def test_metadata_may_only_restrict_name() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}
        },
    }
    assert any("only name and generateName" in v for v in schema_violations(schema))


def test_check_option_lists_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crds"
    assert crdgen.main(["--output-dir", str(out), "--check"]) == 1
    assert "pilotage.dev_datasets.yaml (missing)" in capsys.readouterr().err

    assert crdgen.main(["--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        crdgen.file_name(k) for k in KINDS.values()
    )
    assert crdgen.main(["--output-dir", str(out), "--check"]) == 0

    edited = out / "pilotage.dev_modeldeployments.yaml"
    edited.write_text(edited.read_text().replace("maxItems: 32", "maxItems: 33"))
    (out / "pilotage.dev_oldthings.yaml").write_text("{}\n")
    capsys.readouterr()
    assert crdgen.main(["--output-dir", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "pilotage.dev_modeldeployments.yaml (differs from the models)" in err
    assert "pilotage.dev_oldthings.yaml (no such kind any more)" in err
    assert "pilotage.dev_datasets.yaml" not in err


def test_cli_check_on_the_repository() -> None:
    done = subprocess.run(
        pilotage("crds", "--check"), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "4 CRDs in crds are up to date" in done.stdout


def test_generation_refuses_unbounded_fields() -> None:
    from pydantic import Field

    from pilotage.api.common import ApiModel
    from pilotage.api.resource import Resource

    class LooseSpec(ApiModel):
        names: list[str] = Field(default_factory=list)

    class Loose(Resource):
        KIND = "Loose"
        PLURAL = "looses"
        SHORT_NAMES = []
        PRINTER_COLUMNS = []
        spec: LooseSpec
        status: LooseSpec | None = None

    with pytest.raises(crdgen.CrdError, match=r"\.spec\.names \(list without maxItems\)"):
        crdgen.crd(Loose)
