"""The drift signal a ModelDeployment reads counts only while it is about the stable
version: after a promotion, a monitor still reporting on the previous version (its
status not yet past the change) must not fail or roll back the next candidate."""

from __future__ import annotations

from typing import Any

import pytest

from pilotage.api.modeldeployment import ModelDeployment
from pilotage.control.types import DriftSignal
from tests.control.factories import at, deployment, job, observe, run, stats_of, variant
from tests.control.factories import with_annotations as annotated

CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
DRIFT_SLO = {"interval": "10s", "minRequests": 10, "drift": {"maxScore": 0.5}}
V1, V2, V3 = job("v1", 0), job("v2", 100), job("v3", 300)
JOBS = [V1, V2, V3]
READY = ["v2", "v3"]
ROLLOUT_STARTED = 401  # v3's rollout begins here (see `v3_rolling_after_v2_promoted`)


def v3_rolling_after_v2_promoted(analysis: dict[str, Any] | None = None) -> ModelDeployment:
    """v1 → v2 promoted in full, then v3 rolling out as the canary (v2 stable)."""
    md = deployment(strategy=CANARY, analysis=analysis)
    md, _ = run(md, observe([V1], ["v1"]), 0)
    md, _ = run(md, observe([V1, V2], ["v1"]), 199)
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 200)
    md, _ = run(annotated(md, promote="full"), observe([V1, V2], ["v1", "v2"]), 210)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2" and md.status.candidate is None
    md, _ = run(md, observe(JOBS, ["v2"]), ROLLOUT_STARTED - 1)
    md, _ = run(md, observe(JOBS, READY), ROLLOUT_STARTED)
    assert md.status is not None and md.status.candidate is not None
    assert md.status.candidate.version == "v3"
    return md


def signal(
    version: str | None, *, rollback: bool = False, since: float | None = None
) -> DriftSignal:
    return DriftSignal(
        "iris-dm",
        1.0,
        drifting=rollback,
        rollback=rollback,
        since=None if since is None else at(since),
        message="drifted: a psi=2.000",
        version=version,
    )


SLO_CASES = [
    # (what the monitor's status says, verdict, drift score the analysis records)
    pytest.param(signal("v1"), "Pass", None, id="stale-verdict-on-the-promoted-away-version"),
    pytest.param(signal(None), "Pass", None, id="no-version-known"),
    pytest.param(signal("v2"), "Fail", 1.0, id="verdict-on-the-stable-version"),
]


@pytest.mark.parametrize(("drift", "verdict", "score"), SLO_CASES)
def test_drift_slo_counts_only_a_score_about_the_stable_version(
    drift: DriftSignal, verdict: str, score: float | None
) -> None:
    md = v3_rolling_after_v2_promoted(DRIFT_SLO)
    calm = stats_of(variant("canary", "v3", 0))
    busy = stats_of(variant("canary", "v3", 50))
    md, _ = run(md, observe(JOBS, READY, calm, drift=drift), 420)
    md, _ = run(md, observe(JOBS, READY, busy, drift=drift), 431)
    assert md.status is not None and md.status.last_analysis is not None
    assert md.status.last_analysis.verdict == verdict
    assert md.status.last_analysis.drift_score == score


ROLLBACK_CASES = [
    pytest.param(signal("v1", rollback=True, since=405), "v3", id="stale-rollback-of-v1"),
    pytest.param(signal(None, rollback=True, since=405), "v3", id="no-version-known"),
    pytest.param(signal("v2", rollback=True, since=405), None, id="drift-on-v2-during-v3"),
    pytest.param(signal("v2", rollback=True, since=300), "v3", id="drift-on-v2-before-v3"),
]


@pytest.mark.parametrize(("drift", "candidate"), ROLLBACK_CASES)
def test_drift_rollback_needs_a_signal_about_the_stable_version(
    drift: DriftSignal, candidate: str | None
) -> None:
    md = v3_rolling_after_v2_promoted()
    md, _ = run(md, observe(JOBS, READY, drift=drift), 410)
    assert md.status is not None
    assert (md.status.candidate.version if md.status.candidate else None) == candidate
    if candidate is None:
        assert md.status.rejected_version == "v3" and "iris-dm" in md.status.message
