"""Every manifest in examples/ is accepted by the models and by its CRD (schema and CEL)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pandas as pd
import pytest

from pilotage.api import parse_resource
from tests.api.files import EXAMPLES_DIR, Manifest, example_manifests, load_crds
from tests.api.kube import admit, cel_rules

CRDS = load_crds()
EXAMPLES = example_manifests()


@pytest.mark.parametrize("manifest", EXAMPLES, ids=[m.id for m in EXAMPLES])
def test_example_is_valid_for_the_models(manifest: Manifest) -> None:
    resource = parse_resource(manifest.doc, str(manifest.path))
    assert resource.kind == manifest.doc["kind"]


@pytest.mark.parametrize("manifest", EXAMPLES, ids=[m.id for m in EXAMPLES])
def test_example_is_admitted_by_its_crd(manifest: Manifest) -> None:
    _, errors = admit(manifest.doc, CRDS[manifest.doc["kind"]])
    assert errors == []


@pytest.mark.parametrize("manifest", EXAMPLES, ids=[m.id for m in EXAMPLES])
def test_crd_defaults_agree_with_model_defaults(manifest: Manifest) -> None:
    """What the API server stores (its defaults applied) means the same to the models."""
    stored, _ = admit(manifest.doc, CRDS[manifest.doc["kind"]])
    assert parse_resource(stored) == parse_resource(manifest.doc)


def test_the_api_server_fills_in_defaults() -> None:
    quickstart_job = next(m for m in EXAMPLES if m.id == "quickstart.yaml#1:TrainingJob/iris-v1")
    stored, _ = admit(quickstart_job.doc, CRDS["TrainingJob"])
    assert "backoffLimit" not in quickstart_job.doc["spec"]
    assert stored["spec"]["backoffLimit"] == 2
    assert stored["spec"]["seed"] == 0


def test_examples_cover_each_feature_the_docs_promise() -> None:
    by_file: dict[str, list[dict]] = {}
    for m in EXAMPLES:
        by_file.setdefault(m.path.name, []).append(m.doc)
    assert {
        "quickstart.yaml",
        "canary.yaml",
        "blue-green.yaml",
        "shadow.yaml",
        "drift-retrain.yaml",
        "churn-csv.yaml",
    } <= set(by_file)

    def deployments(name: str) -> list[dict]:
        return [d for d in by_file[name] if d["kind"] == "ModelDeployment"]

    quick = {d["kind"] for d in by_file["quickstart.yaml"]}
    assert quick == {"Dataset", "TrainingJob", "ModelDeployment"}
    assert by_file["quickstart.yaml"][0]["spec"]["source"]["uri"] == "builtin://iris"

    canary = deployments("canary.yaml")[0]["spec"]["strategy"]
    steps = canary["canary"]["steps"]
    assert canary["type"] == "Canary"
    assert any("setWeight" in s for s in steps)
    assert any(s.get("pause", {}).get("duration") for s in steps)
    assert any(s.get("pause") == {} for s in steps), "a manual-promote pause"

    assert deployments("blue-green.yaml")[0]["spec"]["strategy"]["type"] == "BlueGreen"
    assert deployments("shadow.yaml")[0]["spec"]["strategy"]["type"] == "Shadow"

    drift = by_file["drift-retrain.yaml"]
    monitor = next(d for d in drift if d["kind"] == "DriftMonitor")
    template_labels = monitor["spec"]["onDrift"]["retrain"]["template"]["metadata"]["labels"]
    selector = deployments("drift-retrain.yaml")[0]["spec"]["model"]["trainingJobSelector"]
    assert selector["matchLabels"].items() <= template_labels.items()
    first_job = next(d for d in drift if d["kind"] == "TrainingJob")
    assert selector["matchLabels"].items() <= first_job["metadata"]["labels"].items()

    dataset = next(d for d in by_file["churn-csv.yaml"] if d["kind"] == "Dataset")
    types = {c["name"]: c["type"] for c in dataset["spec"]["schema"]}
    assert types["country"] == "category"


def test_every_cel_rule_holds_somewhere_in_the_examples() -> None:
    """Each rule has at least one object in the examples at its level (so it ran and held)."""
    kinds_in_examples = {m.doc["kind"] for m in EXAMPLES}
    assert kinds_in_examples == set(CRDS)
    for kind, crd in CRDS.items():
        assert cel_rules(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]), kind


def _load_generator() -> object:
    spec = importlib.util.spec_from_file_location(
        "make_churn", EXAMPLES_DIR / "data" / "make_churn.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_churn_csv_is_what_its_script_writes() -> None:
    generator = _load_generator()
    text = generator.render()  # type: ignore[attr-defined]
    assert (EXAMPLES_DIR / "data" / "churn.csv").read_text() == text
    assert generator.render() == text  # type: ignore[attr-defined]


def test_churn_csv_has_categories_and_missing_values(tmp_path: Path) -> None:
    frame = pd.read_csv(io.StringIO((EXAMPLES_DIR / "data" / "churn.csv").read_text()))
    assert list(frame.columns) == [
        "customer_id",
        "age",
        "purchases",
        "avg_basket",
        "country",
        "plan",
        "churned",
    ]
    assert 1000 <= len(frame) <= 2000
    for column in ("age", "avg_basket", "country"):
        assert frame[column].isna().sum() > 0, column
    assert frame["purchases"].isna().sum() == 0
    assert set(frame["country"].dropna()) == {"FR", "DE", "ES", "IT", "UK", "US"}
    assert set(frame["churned"]) == {0, 1}
    assert 0.2 < frame["churned"].mean() < 0.8
    # The Dataset's schema holds on the file.
    assert frame["age"].dropna().between(18, 100).all()
    assert (frame["purchases"] >= 0).all()
    assert frame["customer_id"].is_unique
