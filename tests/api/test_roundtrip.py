"""YAML → model → YAML keeps every field, and every status field is declared in the CRD."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from pilotage.api import parse_resource
from pilotage.api.manifests import KINDS
from tests.api.files import Manifest, example_manifests, load_crds
from tests.api.kube import admit

CRDS = load_crds()
EXAMPLES = example_manifests()


def _contained(original: Any, dumped: Any, path: str = "") -> list[str]:
    """Where `original` has something that `dumped` lost or changed."""
    if isinstance(original, dict):
        if not isinstance(dumped, dict):
            return [f"{path}: became {dumped!r}"]
        out = []
        for key, value in original.items():
            if key not in dumped:
                out.append(f"{path}.{key}: lost")
            else:
                out += _contained(value, dumped[key], f"{path}.{key}")
        return out
    if isinstance(original, list):
        if not isinstance(dumped, list) or len(dumped) != len(original):
            return [f"{path}: list changed"]
        return [e for i, v in enumerate(original) for e in _contained(v, dumped[i], f"{path}[{i}]")]
    return [] if original == dumped else [f"{path}: {original!r} became {dumped!r}"]


@pytest.mark.parametrize("manifest", EXAMPLES, ids=[m.id for m in EXAMPLES])
def test_yaml_model_yaml_round_trip(manifest: Manifest) -> None:
    model = parse_resource(manifest.doc)
    text = yaml.safe_dump(model.dump(), sort_keys=False)
    again = parse_resource(yaml.safe_load(text))
    assert again == model
    assert again.dump() == model.dump()
    assert _contained(manifest.doc, model.dump()) == []


@pytest.mark.parametrize("manifest", EXAMPLES, ids=[m.id for m in EXAMPLES])
def test_dumped_model_is_admitted_unchanged(manifest: Manifest) -> None:
    """What the operator writes back (defaults made explicit) passes the CRD as it is."""
    dumped = parse_resource(manifest.doc).dump()
    stored, errors = admit(dumped, CRDS[manifest.doc["kind"]])
    assert errors == []
    assert stored == dumped


# A value for each string pattern the models use, tried in order.
_PATTERN_SAMPLES = ("x", "30s", "file:///models/x", "v1", "1", "a")


def _sample(node: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A value that fills every field this JSON-schema node declares."""
    if "$ref" in node:
        return _sample(
            {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}},
            defs,
        )
    if "anyOf" in node:
        branch = next(b for b in node["anyOf"] if b != {"type": "null"})
        return _sample({**branch, **{k: v for k, v in node.items() if k != "anyOf"}}, defs)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return {"counter": 3, "nested": {"list": [1, "two"]}}
    if "enum" in node:
        return node["enum"][-1]
    if "const" in node:
        return node["const"]
    type_ = node.get("type")
    if type_ == "object":
        if "properties" in node:
            return {k: _sample(v, defs) for k, v in node["properties"].items()}
        keys = (node.get("propertyNames") or {}).get("enum", ["key"])
        return {keys[0]: _sample(node.get("additionalProperties", {}), defs)}
    if type_ == "array":
        return [_sample(node["items"], defs)]
    if type_ == "string":
        pattern = node.get("pattern")
        return next(s for s in _PATTERN_SAMPLES if pattern is None or re.search(pattern, s))
    if type_ == "integer":
        return max(node.get("minimum", 3), min(node.get("maximum", 3), 3))
    if type_ == "number":
        return max(node.get("minimum", 0.5), min(node.get("maximum", 0.5), 0.5))
    if type_ == "boolean":
        return True
    raise AssertionError(f"no sample for {node}")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_status_field_is_declared_in_the_crd(kind: str) -> None:
    """kopf's status patches keep only declared fields: a full status must survive intact."""
    resource = KINDS[kind]
    full = resource.model_json_schema(by_alias=True)
    status = _sample(full["properties"]["status"], full["$defs"])
    example = next(m.doc for m in EXAMPLES if m.doc["kind"] == kind)
    obj = {**example, "status": status}

    model = parse_resource(obj)
    assert model.dump()["status"] == status
    stored, errors = admit(model.dump(), CRDS[kind])
    assert errors == []
    assert stored["status"] == status


def test_an_undeclared_status_field_would_be_caught() -> None:
    crd = copy.deepcopy(CRDS["ModelDeployment"])
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    del status["properties"]["trafficSummary"]
    example = next(m.doc for m in EXAMPLES if m.doc["kind"] == "ModelDeployment")
    _, errors = admit({**example, "status": {"trafficSummary": "stable 100"}}, crd)
    assert errors == ['unknown field "status.trafficSummary"']


def test_a_decreasing_canary_weight_names_the_step() -> None:
    import pydantic

    from pilotage.api.modeldeployment import CanaryStrategy

    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 10}]
    with pytest.raises(pydantic.ValidationError) as info:
        CanaryStrategy.model_validate({"steps": steps})
    assert "steps[2]: setWeight 10 is lower than the setWeight 20 before it (step 3 of 3)" in str(
        info.value
    )
