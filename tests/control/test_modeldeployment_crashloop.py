"""A variant whose server cannot start (issue 16, item 15): a tampered artifact made
`pilotage up` restart the server about once a second while the deployment showed
"Paused … Pass" and the router sent half the traffic to a dead server. A crash-looping
candidate fails its analysis (and is rolled back per failureLimit); a crash-looping stable
is Degraded with reason ServerFailing; the restart delay doubles up to a cap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pilotage.api.conditions import get
from pilotage.control.common import restart_backoff
from pilotage.control.types import ModelDeploymentObservation, ServerState
from tests.control.factories import observe, run, stats_of
from tests.control.test_modeldeployment import CANARY, LATENCY, V1, V2, healthy, rolling

TAMPERED = "refusing to serve file:///m/v2: sha256 of model.onnx is 1f… but model.json says 9a…"


def crashing(obs: ModelDeploymentObservation, version: str) -> ModelDeploymentObservation:
    """``obs`` with ``version``'s server in a crash loop."""
    down = ServerState(version, False, f"server exited: {TAMPERED}", failing=True, restarts=4)
    servers = (*(s for s in obs.servers if s.version != version), down)
    return replace(obs, servers=servers)


def test_a_crash_looping_candidate_fails_analysis_and_is_rolled_back() -> None:
    md = rolling(strategy=CANARY, analysis={**LATENCY, "failureLimit": 1})
    md, result = run(md, crashing(observe([V1, V2], ["v1"], stats_of()), "v2"), 205)
    status = md.status
    assert status is not None and status.candidate is not None
    assert status.phase == "Progressing"
    ready = get(status.conditions, "Ready")
    assert ready is not None and ready.reason == "ServerFailing"
    assert "server of version v2 cannot start" in ready.message and "sha256" in ready.message
    assert [e.reason for e in result.events] == ["ServerFailing"]
    assert status.traffic == {"stable": 100}  # no traffic to a server that does not run
    # Each analysis interval it stays down is a failed analysis, however few requests.
    md, result = run(md, crashing(observe([V1, V2], ["v1"], stats_of()), "v2"), 215)
    assert md.status is not None and md.status.last_analysis is not None
    assert md.status.last_analysis.verdict == "Fail" and md.status.last_analysis.failures == 1
    assert "cannot start" in md.status.last_analysis.message
    assert md.status.candidate is not None  # within failureLimit 1
    md, result = run(md, crashing(observe([V1, V2], ["v1"], stats_of()), "v2"), 225)
    status = md.status
    assert status is not None and status.candidate is None and status.rejected_version == "v2"
    assert status.phase == "Degraded" and "RolledBack" in [e.reason for e in result.events]
    assert "cannot start" in status.history[-1].message


def test_without_auto_rollback_a_crash_looping_candidate_halts() -> None:
    md = rolling(strategy=CANARY, analysis=LATENCY, autoRollback=False)
    for t in (205, 215, 225):
        md, _ = run(md, crashing(observe([V1, V2], ["v1"], stats_of()), "v2"), t)
    status = md.status
    assert status is not None and status.candidate is not None
    ready = get(status.conditions, "Ready")
    assert status.phase == "Degraded" and ready is not None and ready.reason == "AnalysisFailed"
    assert "cannot start" in ready.message


def test_a_crash_looping_stable_is_degraded_with_a_reason() -> None:
    md = healthy()
    md, result = run(md, crashing(observe([V1], []), "v1"), 50)
    status = md.status
    assert status is not None and status.phase == "Degraded"
    ready = get(status.conditions, "Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "ServerFailing"
    assert "server of version v1 cannot start" in status.message
    assert "(restarted 4 times)" in status.message
    assert [e.reason for e in result.events] == ["ServerFailing"]
    md, result = run(md, crashing(observe([V1], []), "v1"), 60)
    assert "ServerFailing" not in [e.reason for e in result.events]  # said once
    md, result = run(md, observe([V1], ["v1"]), 70)
    assert md.status is not None and md.status.phase == "Healthy"


@pytest.mark.parametrize(
    ("crashes", "delay"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (99, 60.0)]
)
def test_restart_backoff_doubles_up_to_a_cap(crashes: int, delay: float) -> None:
    assert restart_backoff(crashes) == delay
