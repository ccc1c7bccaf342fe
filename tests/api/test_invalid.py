"""Bad manifests are rejected by the models and by the CRD, naming the field at fault."""

from __future__ import annotations

import pytest

from pilotage.api import ManifestError, parse_resource
from tests.api.files import InvalidManifest, invalid_manifests, load_crds, names_field
from tests.api.kube import admit, cel_rules

CRDS = load_crds()
INVALID = invalid_manifests()


@pytest.mark.parametrize("manifest", INVALID, ids=[m.path.stem for m in INVALID])
def test_models_reject_naming_the_field(manifest: InvalidManifest) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_resource(manifest.doc, manifest.path.name)
    message = str(caught.value)
    assert names_field(message, manifest.field), message


@pytest.mark.parametrize("manifest", INVALID, ids=[m.path.stem for m in INVALID])
def test_crd_rejects_naming_the_field(manifest: InvalidManifest) -> None:
    _, errors = admit(manifest.doc, CRDS[manifest.doc["kind"]])
    assert errors, f"{manifest.path.name} was admitted"
    assert any(names_field(e, manifest.field) for e in errors), errors


def test_every_cel_rule_rejects_at_least_one_invalid_manifest() -> None:
    """No rule is dead: each one's message comes back for some manifest of its kind."""
    messages: dict[str, set[str]] = {kind: set() for kind in CRDS}
    for manifest in INVALID:
        kind = manifest.doc["kind"]
        _, errors = admit(manifest.doc, CRDS[kind])
        messages[kind].update(errors)
    for kind, crd in CRDS.items():
        for rule in cel_rules(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
            assert any(rule["message"] in m for m in messages[kind]), (
                f"{kind}: no invalid manifest breaks {rule['rule']!r}"
            )


def test_a_failing_rule_reports_its_message_not_an_evaluation_error() -> None:
    for manifest in INVALID:
        _, errors = admit(manifest.doc, CRDS[manifest.doc["kind"]])
        assert not [e for e in errors if "errored" in e], (manifest.path.name, errors)
