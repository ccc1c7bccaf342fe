"""The Argo CD Application and Flux examples point at what exists, and their chart values
pass the chart's schema and render with the real `helm`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import CHART, helm

pytestmark = pytest.mark.xdist_group("chart")

ROOT = Path(__file__).resolve().parents[2]


def docs_of(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]


def renders_with(values: dict[str, Any], tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    done = helm("template", "pilotage", str(CHART), "-f", str(file), check=False)
    assert done.returncode == 0, done.stderr


def test_argocd_application_installs_the_chart(tmp_path: Path) -> None:
    (app,) = docs_of("deploy/argocd/application.yaml")
    assert app["kind"] == "Application" and app["apiVersion"] == "argoproj.io/v1alpha1"
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").exists()
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    renders_with(source["helm"]["valuesObject"], tmp_path)


def test_argocd_models_application_points_at_manifests() -> None:
    (app,) = docs_of("deploy/argocd/models-application.yaml")
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / source["directory"]["include"]).exists()


def test_flux_helmrelease_upgrades_crds_and_renders(tmp_path: Path) -> None:
    objects = {d["kind"]: d for d in docs_of("deploy/flux/pilotage.yaml")}
    release = objects["HelmRelease"]
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    spec = release["spec"]
    assert (ROOT / spec["chart"]["spec"]["chart"] / "Chart.yaml").exists()
    assert spec["install"]["crds"] == spec["upgrade"]["crds"] == "CreateReplace"
    assert (
        spec["chart"]["spec"]["sourceRef"]["name"] == objects["GitRepository"]["metadata"]["name"]
    )
    renders_with(spec["values"], tmp_path)


def test_flux_kustomization_waits_on_kstatus() -> None:
    objects = {d["kind"]: d for d in docs_of("deploy/flux/pilotage.yaml")}
    kustomization = objects["Kustomization"]["spec"]
    assert kustomization["wait"] is True
    assert (ROOT / kustomization["path"]).is_dir()


@pytest.mark.parametrize(
    "path", ["deploy/argocd/argocd-cm-health.yaml", "deploy/argocd/argo-cd-values.yaml"]
)
def test_argocd_health_snippets_have_the_four_kinds(path: str) -> None:
    (doc,) = docs_of(path)
    data = doc["data"] if "data" in doc else doc["configs"]["cm"]
    assert sorted(data) == sorted(
        f"resource.customizations.health.pilotage.dev_{k}"
        for k in ("Dataset", "DriftMonitor", "ModelDeployment", "TrainingJob")
    )
