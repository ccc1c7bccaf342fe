"""The Argo CD health scripts, run by a Lua interpreter (lupa) on every sample of their
testdata/, in the argo-cd project's layout: `<group>/<Kind>/health.lua`,
`health_test.yaml` (expected status + message per input), `testdata/*.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml

from pilotage.api import Dataset, DriftMonitor, ModelDeployment, TrainingJob

HEALTH = Path(__file__).resolve().parents[2] / "charts" / "pilotage" / "health"
KINDS = {"Dataset": Dataset, "TrainingJob": TrainingJob, "ModelDeployment": ModelDeployment}
KINDS["DriftMonitor"] = DriftMonitor
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def to_lua(runtime: Any, value: Any) -> Any:
    """JSON-like Python → Lua tables (lists 1-indexed), as Argo CD hands objects over."""
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def run_health(script: str, obj: dict[str, Any]) -> dict[str, Any]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute(script)
    return dict(result.items())


def cases() -> list[tuple[str, Path, dict[str, Any]]]:
    out = []
    for test_file in sorted(HEALTH.glob("*/*/health_test.yaml")):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            out.append((test_file.parent.name, test_file.parent, case))
    return out


CASES = cases()


def test_every_kind_has_a_script_and_tests() -> None:
    assert sorted(p.name for p in HEALTH.glob("pilotage.dev/*")) == sorted(KINDS)
    for kind in KINDS:
        assert (HEALTH / "pilotage.dev" / kind / "health.lua").exists()
        assert (HEALTH / "pilotage.dev" / kind / "verdict.lua").exists()  # its source


@pytest.mark.parametrize(
    ("kind", "folder", "case"),
    CASES,
    ids=[f"{kind}-{Path(c['inputPath']).stem}" for kind, _, c in CASES],
)
def test_health_script_on_sample(kind: str, folder: Path, case: dict[str, Any]) -> None:
    sample = yaml.safe_load((folder / case["inputPath"]).read_text())
    assert sample["kind"] == kind
    KINDS[kind].model_validate(sample)  # samples are real objects of the kind
    got = run_health((folder / "health.lua").read_text(), sample)
    assert got == case["healthStatus"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_phase_of_each_kind_is_covered(kind: str) -> None:
    """Every phase the kind's status can take appears in some sample."""
    phases = set(
        KINDS[kind]
        .model_fields["status"]
        .annotation.__args__[0]  # type: ignore[union-attr]
        .model_fields["phase"]
        .annotation.__args__
    )
    folder = HEALTH / "pilotage.dev" / kind
    seen = set()
    for case in yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]:
        sample = yaml.safe_load((folder / case["inputPath"]).read_text())
        seen.add((sample.get("status") or {}).get("phase"))
        assert case["healthStatus"]["status"] in ARGO_STATUSES
    assert phases <= seen, f"phases without a sample: {phases - seen}"


def test_model_deployment_covers_all_four_argo_statuses() -> None:
    folder = HEALTH / "pilotage.dev" / "ModelDeployment"
    statuses = {
        c["healthStatus"]["status"]
        for c in yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
    }
    assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_generated_argocd_snippets_carry_the_scripts() -> None:
    root = HEALTH.parents[2]
    patch = yaml.safe_load((root / "deploy/argocd/argocd-cm-health.yaml").read_text())
    values = yaml.safe_load((root / "deploy/argocd/argo-cd-values.yaml").read_text())
    for kind in KINDS:
        key = f"resource.customizations.health.pilotage.dev_{kind}"
        script = (HEALTH / "pilotage.dev" / kind / "health.lua").read_text()
        assert patch["data"][key] == script
        assert values["configs"]["cm"][key] == script
