"""Small pure pieces: settings from the environment, merge-patch diffs, RBAC data, PSS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotage.operator import rbac
from pilotage.operator.patching import is_subset, merge_diff
from pilotage.operator.settings import SettingsError, load_settings


def test_settings_from_env_and_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTAGE_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("PILOTAGE_ARTIFACT_URI", "s3://models/pilotage/")
    settings = load_settings()
    assert settings.namespaces == ["team-a", "team-b"] and not settings.clusterwide
    assert settings.artifact_uri == "s3://models/pilotage"
    monkeypatch.setenv("PILOTAGE_ARTIFACT_URI", "file:///tmp/x")
    with pytest.raises(SettingsError, match="PILOTAGE_ARTIFACT_URI"):
        load_settings()


def test_settings_file_is_below_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("router_admin_port: 9999\nserver_port: 7000\n")
    monkeypatch.setenv("PILOTAGE_SERVER_PORT", "7100")
    settings = load_settings(path)
    assert settings.router_admin_port == 9999 and settings.server_port == 7100


def test_merge_diff_nulls_what_went_away() -> None:
    old = {
        "traffic": {"stable": 80, "canary": 20},
        "candidate": {"version": "v2"},
        "phase": "Paused",
    }
    new = {"traffic": {"stable": 100}, "phase": "Healthy"}
    assert merge_diff(old, new) == {
        "traffic": {"canary": None, "stable": 100},
        "candidate": None,
        "phase": "Healthy",
    }
    assert merge_diff(new, new) == {}


def test_is_subset_ignores_server_defaults() -> None:
    wanted = {"spec": {"containers": [{"name": "a", "image": "x"}]}}
    live = {"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Always"}]}}
    assert is_subset(wanted, live)
    assert not is_subset({"spec": {"containers": [{"image": "y"}]}}, live)


def test_rbac_rules_by_scope() -> None:
    namespaced = rbac.rules(clusterwide=False)
    clusterwide = rbac.rules(clusterwide=True)
    assert any("kopfpeerings" in r["resources"] for r in namespaced)
    assert not any("clusterkopfpeerings" in r["resources"] for r in namespaced)
    assert any("clusterkopfpeerings" in r["resources"] for r in clusterwide)
    assert not any("kopfpeerings" in r["resources"] for r in clusterwide)
    assert rbac.missing_rules([("batch", "jobs", "create")]) == []
    assert rbac.missing_rules([("", "secrets", "list")]) == [("", "secrets", "list")]


def test_a_failed_runs_exit_code_comes_from_its_newest_pod() -> None:
    # Exit status 2 (a spec error) is what keeps the TrainingJob from retrying.
    from pilotage.operator.platform import termination_exit_code

    def pod(created: str, code: int | None, name: str = "trainer") -> dict[str, Any]:
        terminated = {} if code is None else {"exitCode": code}
        return {
            "metadata": {"creationTimestamp": created},
            "status": {"containerStatuses": [{"name": name, "state": {"terminated": terminated}}]},
        }

    assert (
        termination_exit_code([pod("2026-01-01T00:00:00Z", 1), pod("2026-01-01T00:01:00Z", 2)]) == 2
    )
    assert termination_exit_code([pod("2026-01-01T00:00:00Z", 2, name="sidecar")]) is None
    assert termination_exit_code([pod("2026-01-01T00:00:00Z", None)]) is None
    assert termination_exit_code([]) is None


def test_kopf_scans_namespaces_and_crds_only_when_cluster_wide() -> None:
    """Namespaced, the chart grants nothing cluster-scoped: kopf's scanning would be
    refused (403 errors in the operator's log on the real API server)."""
    from pilotage.operator.handlers import kopf_settings
    from pilotage.operator.settings import OperatorSettings

    namespaced = OperatorSettings(namespaces=["team-a"], standalone=True)
    assert kopf_settings(namespaced, 1).scanning.disabled
    assert not kopf_settings(OperatorSettings(standalone=True), 1).scanning.disabled
