from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pilotage.api.conditions import get
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.control.types import (
    DriftSignal,
    EnsureRouter,
    EnsureServer,
    RemoveServer,
    RouterStats,
    ShadowStats,
)
from tests.control.factories import (
    add,
    at,
    deployment,
    job,
    observe,
    routes,
    run,
    stats_of,
    variant,
    with_annotations,
)

STEPS = [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 50}, {"pause": {}}]
CANARY = {"type": "Canary", "canary": {"steps": STEPS}}
LATENCY = {"interval": "10s", "minRequests": 10, "latency": {"p99Ms": 100}}
V1, V2 = job("v1", 0), job("v2", 100)


def ready_reason(md: ModelDeployment) -> str:
    assert md.status is not None
    cond = get(md.status.conditions, "Ready")
    assert cond is not None
    return cond.reason


def healthy(**kwargs: Any) -> ModelDeployment:
    md, _ = run(deployment(**kwargs), observe([V1], ["v1"]), 0)
    return md


def rolling(seconds: float = 200, **kwargs: Any) -> ModelDeployment:
    """v1 stable, v2 candidate with its server ready and the first weight applied."""
    md = healthy(**kwargs)
    md, _ = run(md, observe([V1, V2], ["v1"]), seconds - 1)
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), seconds)
    return md


def test_first_version_goes_straight_to_stable() -> None:
    md, result = run(deployment(), observe([V1], []), 0)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v1" and md.status.candidate is None
    assert md.status.phase == "Progressing" and ready_reason(md) == "Deploying"
    assert any(isinstance(a, EnsureRouter) for a in result.actions)
    assert [a.version for a in result.actions if isinstance(a, EnsureServer)] == ["v1"]
    assert routes(result) is None and md.status.traffic == {}
    assert [e.reason for e in result.events] == ["Deployed"]

    md, result = run(md, observe([V1], ["v1"]), 5)
    table = routes(result)
    assert table is not None and table.table.weights() == {"stable": 100}
    assert md.status is not None and md.status.phase == "Healthy"
    assert md.status.traffic == {"stable": 100} and md.status.traffic_summary == "stable 100"
    assert ready_reason(md) == "Healthy" and md.status.endpoint == "http://127.0.0.1:9000"
    assert get(md.status.conditions, "Reconciling") is None


def test_waits_for_a_model_then_refuses_failed_gates() -> None:
    md, result = run(deployment(model={"trainingJobRef": {"name": "iris-v1"}}), observe([], []), 0)
    assert md.status is not None and md.status.phase == "Pending"
    assert ready_reason(md) == "TrainingJobNotFound" and result.actions[1:] == []
    failed = job("v1", gates=False)
    md, result = run(md, observe([failed], []), 5)
    assert ready_reason(md) == "GatesFailed" and md.status is not None
    assert md.status.stable is None and get(md.status.conditions, "Stalled") is not None
    assert not [a for a in result.actions if isinstance(a, EnsureServer)]


def test_selector_takes_the_newest_deployable_job() -> None:
    jobs = [
        job("v1", 0),
        job("v2", 50),
        job("v3", 90, gates=False),
        job("v4", 95, phase="Running"),
        job("x9", 99, labels={"app": "other"}),
    ]
    md, _ = run(deployment(), observe(jobs, []), 0)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2"
    assert md.status.stable.training_job == "iris-v2"


def test_uri_source_takes_the_version_from_the_path() -> None:
    md, _ = run(deployment(model={"uri": "s3://models/ns/iris/2024-06"}), observe([], []), 0)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "2024-06"


@pytest.mark.parametrize(("first", "then"), [(None, "iris-abc"), ("iris-abc", None)])
def test_a_served_uri_keeps_its_version_whether_its_card_is_read_or_not(
    first: str | None, then: str | None
) -> None:
    """The model card gives a URI's version when it can be read; a card read on one call
    and not on the next (not written yet, a storage hiccup) must not roll the same model
    out again under another name."""
    md = deployment(model={"uri": "s3://models/ns/iris/2024-06"})
    md, _ = run(md, replace(observe([], []), model_card_version=first), 0)
    assert md.status is not None and md.status.stable is not None
    served = md.status.stable.version
    assert served == (first or "2024-06")
    for t in (10, 20):
        md, result = run(md, replace(observe([], [served]), model_card_version=then), t)
        assert md.status is not None and md.status.stable is not None
        assert md.status.stable.version == served and md.status.candidate is None
        assert "RolloutStarted" not in [e.reason for e in result.events]


def test_canary_steps_pause_and_promote() -> None:
    md = healthy(strategy=CANARY)
    md, result = run(md, observe([V1, V2], ["v1"]), 100)
    assert md.status is not None and md.status.candidate is not None
    assert md.status.candidate.version == "v2" and md.status.traffic == {"stable": 100}
    assert "RolloutStarted" in [e.reason for e in result.events]
    assert {a.version for a in result.actions if isinstance(a, EnsureServer)} == {"v1", "v2"}

    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 101)
    assert md.status is not None and md.status.traffic == {"stable": 80, "canary": 20}
    assert md.status.traffic_summary == "stable 80 / canary 20"
    assert md.status.phase == "Progressing" and md.status.current_step == 1
    assert result.requeue_after is not None and result.requeue_after <= 30

    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 120)  # pause not over
    assert md.status is not None and md.status.traffic == {"stable": 80, "canary": 20}
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 131)
    assert md.status is not None and md.status.traffic == {"stable": 50, "canary": 50}
    assert md.status.phase == "Paused" and ready_reason(md) == "Paused"
    paused = "paused at step 4 of 4 (weight 50): waiting for promote"
    assert f"Normal Paused {paused}" in [f"{e.type} {e.reason} {e.message}" for e in result.events]
    assert md.status.message == f"rollout of v2 {paused}"  # the same step as the event's

    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 5000)  # an indefinite pause holds
    assert md.status is not None and md.status.phase == "Paused"
    assert md.status.traffic == {"stable": 50, "canary": 50} and result.events == []

    md = with_annotations(md, promote="step")
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 5001)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2" and md.status.candidate is None
    assert md.status.traffic == {"stable": 100} and md.status.phase == "Healthy"
    assert RemoveServer("iris", "v1") in result.actions
    assert [h.action for h in md.status.history] == ["Deployed", "RolloutStarted", "Promoted"]
    # The same annotation value is never acted on twice.
    md, result = run(md, observe([V1, V2], ["v2"]), 5002)
    assert md.status is not None and md.status.phase == "Healthy" and result.events == []


def test_the_old_server_goes_only_once_the_router_serves_the_new_table() -> None:
    """On the real cluster the old stable's Service went in the promoting reconcile, while
    the router still sent it requests (a pushed table can fall back to the ConfigMap):
    61 clients got 502 'cannot connect'. The server now waits for the router's revision."""
    md = rolling(strategy=CANARY)
    stale = RouterStats(revision="an-older-table")
    md, result = run(
        with_annotations(md, promote="full"), observe([V1, V2], ["v1", "v2"], stale), 210
    )
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2" and md.status.traffic == {"stable": 100}
    table = routes(result)
    assert table is not None
    assert not [a for a in result.actions if isinstance(a, RemoveServer)]
    md, result = run(md, observe([V1, V2], ["v1", "v2"], stale), 211)  # still the old one
    assert not [a for a in result.actions if isinstance(a, RemoveServer)]
    serving = RouterStats(revision=table.table.revision)
    md, result = run(md, observe([V1, V2], ["v1", "v2"], serving), 212)
    assert RemoveServer("iris", "v1") in result.actions


def test_promote_full_skips_the_remaining_steps() -> None:
    md = rolling(strategy=CANARY)
    md, _ = run(with_annotations(md, promote="full"), observe([V1, V2], ["v1", "v2"]), 210)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2" and md.status.traffic == {"stable": 100}


def analysed(md: ModelDeployment, before: RouterStats, after: RouterStats, t: float = 300) -> Any:
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], before), t)
    return run(md, observe([V1, V2], ["v1", "v2"], after), t + 10)


def test_latency_breach_rolls_back_in_the_same_reconcile() -> None:
    md = rolling(strategy=CANARY, analysis=LATENCY)
    slow = stats_of(variant("canary", "v2", 50, seconds=0.4))
    md, result = analysed(md, stats_of(), slow)
    status = md.status
    assert status is not None and status.candidate is None and status.rejected_version == "v2"
    assert status.traffic == {"stable": 100}
    assert routes(result) is not None and routes(result).table.weights() == {"stable": 100}  # type: ignore[union-attr]
    assert status.phase == "Degraded" and ready_reason(md) == "RolledBack"
    assert status.last_analysis is not None and status.last_analysis.verdict == "Fail"
    assert status.last_analysis.p99_ms is not None and status.last_analysis.p99_ms > 100
    assert "p99 latency" in status.message and "SLO 100ms" in status.message
    warning = [e for e in result.events if e.reason == "RolledBack"]
    assert warning and warning[0].type == "Warning" and "SLO 100ms" in warning[0].message
    assert status.history[-1].action == "RolledBack"
    assert RemoveServer("iris", "v2") in result.actions
    # It stays rolled back: v2 is still the newest match but is not retried.
    md, result = run(md, observe([V1, V2], ["v1"]), 400)
    assert md.status is not None and md.status.candidate is None
    assert md.status.phase == "Degraded" and get(md.status.conditions, "Stalled") is not None
    # retry rolls it out again; a new version would too.
    md, result = run(with_annotations(md, retry="1"), observe([V1, V2], ["v1"]), 500)
    assert md.status is not None and md.status.candidate is not None
    assert md.status.candidate.version == "v2" and md.status.rejected_version is None


def test_a_new_version_clears_the_rejection() -> None:
    md = rolling(strategy=CANARY, analysis=LATENCY)
    md, _ = analysed(md, stats_of(), stats_of(variant("canary", "v2", 50, seconds=0.4)))
    v3 = job("v3", 600)
    md, _ = run(md, observe([V1, V2, v3], ["v1"]), 700)
    assert md.status is not None and md.status.candidate is not None
    assert md.status.candidate.version == "v3" and md.status.rejected_version is None


@pytest.mark.parametrize(
    ("requests", "seconds", "errors", "verdict"),
    [(5, 0.4, 0, "Inconclusive"), (50, 0.01, 0, "Pass"), (50, 0.01, 10, "Fail")],
)
def test_analysis_verdicts(requests: int, seconds: float, errors: int, verdict: str) -> None:
    analysis = {**LATENCY, "errorRate": {"max": 0.05}, "failureLimit": 3}
    md = rolling(strategy=CANARY, analysis=analysis)
    after = stats_of(variant("canary", "v2", requests, errors, seconds))
    md, _ = analysed(md, stats_of(), after)
    assert md.status is not None and md.status.last_analysis is not None
    assert md.status.last_analysis.verdict == verdict
    assert md.status.last_analysis.requests == requests
    assert md.status.candidate is not None  # within failureLimit nothing is rolled back


def test_failure_limit_tolerates_failures_then_rolls_back() -> None:
    md = rolling(strategy=CANARY, analysis={**LATENCY, "failureLimit": 1})
    slow = variant("canary", "v2", 50, seconds=0.4)
    md, result = analysed(md, stats_of(), stats_of(slow))
    assert md.status is not None and md.status.candidate is not None
    assert [e.reason for e in result.events] == ["AnalysisFailed"]
    md, result = run(md, observe([V1, V2], ["v1", "v2"], stats_of(add(slow, slow))), 320)
    assert md.status is not None and md.status.candidate is None
    assert md.status.last_analysis is not None and md.status.last_analysis.failures == 2
    assert "(2 failed analyses, failureLimit 1)" in md.status.history[-1].message


def test_without_auto_rollback_a_failing_canary_halts() -> None:
    md = rolling(strategy=CANARY, analysis=LATENCY, autoRollback=False)
    slow = stats_of(variant("canary", "v2", 50, seconds=0.4))
    md, _ = analysed(md, stats_of(), slow, t=205)  # during the 30 s pause at weight 20
    assert md.status is not None and md.status.candidate is not None
    assert md.status.phase == "Degraded" and ready_reason(md) == "AnalysisFailed"
    assert md.status.traffic == {"stable": 80, "canary": 20}
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 1000)  # the pause would be over by now
    assert md.status is not None and md.status.current_step == 1


def test_router_restart_drops_the_window() -> None:
    md = rolling(strategy=CANARY, analysis=LATENCY)
    before = stats_of(variant("canary", "v2", 500, seconds=0.01))
    restarted = stats_of(variant("canary", "v2", 20, seconds=0.4))
    md, _ = analysed(md, before, restarted)
    assert md.status is not None and md.status.candidate is not None
    last = md.status.last_analysis
    assert last is not None and last.verdict == "Pass" and last.time == "2026-01-01T00:05:00Z"
    assert md.status.analysis_checkpoint is not None
    assert md.status.analysis_checkpoint["requests"] == 20  # a fresh window from the new counters


def test_no_analysis_until_the_router_runs_the_table() -> None:
    md = rolling(strategy=CANARY, analysis=LATENCY)
    stale = RouterStats(variants=(variant("canary", "v2", 50, seconds=0.4),), revision="old")
    md, _ = analysed(md, stale, stale)
    assert md.status is not None and md.status.last_analysis is None


def test_abort_sends_traffic_back_to_stable() -> None:
    md = rolling(strategy=CANARY)
    md, result = run(with_annotations(md, abort="yes"), observe([V1, V2], ["v1", "v2"]), 210)
    assert md.status is not None and md.status.candidate is None
    assert md.status.traffic == {"stable": 100} and md.status.rejected_version == "v2"
    assert ready_reason(md) == "Aborted" and md.status.phase == "Degraded"
    assert [e.reason for e in result.events] == ["Aborted"]


def test_a_new_wanted_version_supersedes_the_rollout() -> None:
    md = rolling(strategy=CANARY)
    v3 = job("v3", 250)
    md, result = run(md, observe([V1, V2, v3], ["v1", "v2"]), 260)
    assert md.status is not None and md.status.candidate is not None
    assert md.status.candidate.version == "v3" and md.status.traffic == {"stable": 100}
    assert RemoveServer("iris", "v2") in result.actions
    assert "Superseded" in [e.reason for e in result.events]


def test_drift_that_starts_during_a_rollout_rolls_the_candidate_back() -> None:
    md = rolling(strategy=CANARY)
    old_drift = DriftSignal("dm", 0.8, True, True, since=at(50), version="v1")
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], drift=old_drift), 205)
    assert md.status is not None and md.status.candidate is not None
    new_drift = DriftSignal("dm", 0.8, True, True, since=at(204), version="v1")
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], drift=new_drift), 210)
    assert md.status is not None and md.status.candidate is None
    assert md.status.rejected_version == "v2" and ready_reason(md) == "RolledBack"
    assert "DriftMonitor dm" in md.status.message


def test_blue_green_previews_then_switches_and_scales_down_later() -> None:
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {"autoPromotionSeconds": 20, "scaleDownDelaySeconds": 60},
    }
    md = rolling(strategy=strategy, analysis={"interval": "10s"})
    assert md.status is not None and md.status.traffic == {"stable": 100, "preview": 0}
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 210)
    assert md.status is not None and md.status.candidate is not None
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 221)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2" and md.status.traffic == {"stable": 100}
    assert md.status.previous is not None and md.status.previous.version == "v1"
    assert not [a for a in result.actions if isinstance(a, RemoveServer)]
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 282)
    assert md.status is not None and md.status.previous is None
    assert RemoveServer("iris", "v1") in result.actions


def test_blue_green_with_slos_needs_a_passing_analysis() -> None:
    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromotionSeconds": 5}}
    md = rolling(strategy=strategy, analysis=LATENCY)
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 300)
    assert md.status is not None and md.status.candidate is not None  # no analysis yet
    fast = stats_of(variant("preview", "v2", 30, seconds=0.01))
    md, result = run(md, observe([V1, V2], ["v1", "v2"], fast), 311)
    assert md.status is not None and md.status.candidate is not None  # passed: 5 s from now
    assert md.status.passing_since == "2026-01-01T00:05:11Z"
    assert result.requeue_after is not None and result.requeue_after <= 5
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], fast), 316)
    assert md.status is not None and md.status.candidate is None
    assert md.status.stable is not None and md.status.stable.version == "v2"


def test_blue_green_without_auto_promotion_waits_for_promote() -> None:
    md = rolling(strategy={"type": "BlueGreen"})
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 9999)
    assert md.status is not None and md.status.phase == "Paused"
    md, _ = run(with_annotations(md, promote="go"), observe([V1, V2], ["v1", "v2"]), 10000)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2"


@pytest.mark.parametrize(("agree", "disagree", "promoted"), [(95, 5, True), (50, 50, False)])
def test_shadow_compares_then_promotes_or_rolls_back(
    agree: int, disagree: int, promoted: bool
) -> None:
    strategy = {"type": "Shadow", "shadow": {"duration": "15s", "percent": 50}}
    analysis = {"interval": "10s", "minRequests": 10, "shadow": {"minAgreement": 0.9}}
    md = rolling(strategy=strategy, analysis=analysis)
    assert md.status is not None
    assert md.status.traffic == {"stable": 100, "shadow": 0}
    assert md.status.traffic_summary == "stable 100 / shadow 0 (mirrors 50%)"
    after = stats_of(shadow=ShadowStats(agree=agree, disagree=disagree))
    md, _ = analysed(md, stats_of(), after, t=201)
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], after), 216)
    assert md.status is not None and md.status.stable is not None
    assert (md.status.stable.version == "v2") is promoted
    if not promoted:
        assert md.status.rejected_version == "v2" and "agreement" in md.status.message


def test_invalid_spec_keeps_serving_and_says_which_field() -> None:
    md = healthy()
    bad = deployment(analysis={"interval": "0s"}).model_copy(update={"status": md.status})
    md, result = run(bad, observe([V1], ["v1"]), 10)
    assert ready_reason(md) == "InvalidSpec" and md.status is not None
    assert md.status.message.startswith("spec.analysis.interval")
    assert routes(result) is not None and md.status.traffic == {"stable": 100}


BLUE_GREEN_30 = {
    "type": "BlueGreen",
    "blueGreen": {"autoPromotionSeconds": 30, "scaleDownDelaySeconds": 60},
}


def _preview(requests: int, seconds: float = 0.01) -> RouterStats:
    return stats_of(variant("stable", "v1", 0), variant("preview", "v2", requests, seconds=seconds))


def test_blue_green_auto_promotion_counts_from_the_first_passing_analysis() -> None:
    # Pass, Pass, then the preview traffic stops (Inconclusive n=0): the switch still
    # comes autoPromotionSeconds after the first pass, not after the preview got ready.
    md = rolling(strategy=BLUE_GREEN_30, analysis=LATENCY)  # preview ready at 200
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], _preview(30)), 210)
    assert md.status is not None and md.status.last_analysis is not None
    assert md.status.last_analysis.verdict == "Pass"
    assert md.status.passing_since == "2026-01-01T00:03:30Z"
    assert "switching at 2026-01-01T00:04:00Z" in md.status.message
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], _preview(60)), 220)
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], _preview(60)), 230)
    assert md.status is not None and md.status.last_analysis is not None
    assert md.status.last_analysis.verdict == "Inconclusive" and md.status.candidate is not None
    assert md.status.passing_since == "2026-01-01T00:03:30Z"  # not reset by no traffic
    md, result = run(md, observe([V1, V2], ["v1", "v2"], _preview(60)), 240)
    assert md.status is not None and md.status.candidate is None
    assert md.status.stable is not None and md.status.stable.version == "v2"
    assert [e.reason for e in result.events][:1] == ["Promoted"]


def test_a_failed_analysis_restarts_the_blue_green_count() -> None:
    analysis = {**LATENCY, "failureLimit": 2}
    md = rolling(strategy=BLUE_GREEN_30, analysis=analysis)
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], _preview(30)), 210)  # pass
    slow = stats_of(
        variant("stable", "v1", 0),
        add(variant("preview", "v2", 30, seconds=0.01), variant("preview", "v2", 30, seconds=1.0)),
    )
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], slow), 220)  # fail
    assert md.status is not None and md.status.last_analysis is not None
    assert md.status.last_analysis.verdict == "Fail" and md.status.passing_since is None
    passed = stats_of(
        variant("stable", "v1", 0),
        add(
            add(
                variant("preview", "v2", 30, seconds=0.01),
                variant("preview", "v2", 30, seconds=1.0),
            ),
            variant("preview", "v2", 30, seconds=0.01),
        ),
    )
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], passed), 230)  # pass again
    assert md.status is not None and md.status.passing_since == "2026-01-01T00:03:50Z"
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], passed), 250)
    assert md.status is not None and md.status.candidate is not None  # 20 s < 30 s
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], passed), 260)
    assert md.status is not None and md.status.candidate is None


def _switched(delay: int = 60) -> tuple[ModelDeployment, Any]:
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {"autoPromotionSeconds": 10, "scaleDownDelaySeconds": delay},
    }
    md = rolling(strategy=strategy, analysis={"interval": "10s"})
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 211)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2"
    return md, result


def test_promoted_event_keeps_previous_then_scaled_down_event() -> None:
    md, result = _switched()
    promoted = next(e for e in result.events if e.reason == "Promoted")
    assert "retired" not in promoted.message
    assert "v1 kept as previous for 60s (abort switches back to it)" in promoted.message
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 240)
    assert "ScaledDown" not in [e.reason for e in result.events]
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 272)
    scaled = [e for e in result.events if e.reason == "ScaledDown"]
    assert len(scaled) == 1 and "previous version v1 scaled down" in scaled[0].message
    assert RemoveServer("iris", "v1") in result.actions


def test_abort_within_the_scale_down_delay_switches_back_at_once() -> None:
    md, _ = _switched()
    md, result = run(with_annotations(md, abort="a1"), observe([V1, V2], ["v1", "v2"]), 230)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v1" and md.status.previous is None
    table = routes(result)
    assert table is not None and table.table.weights() == {"stable": 100}
    assert [v.version for v in table.table.variants] == ["v1"]
    assert md.status.rejected_version == "v2" and md.status.phase == "Degraded"
    assert ready_reason(md) == "Aborted" and "switched back to v1" in md.status.message
    assert [e.reason for e in result.events] == ["SwitchedBack"]
    assert (
        md.status.history[-1].action == "Aborted" and md.status.history[-1].reason == "SwitchedBack"
    )
    # The spec still wants v2: it is not rolled out again until retry.
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 240)
    assert md.status is not None and md.status.candidate is None
    assert RemoveServer("iris", "v2") in result.actions
    # After the delay there is nothing to switch back to: abort does nothing.
    md, _ = _switched()
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 272)
    md, result = run(with_annotations(md, abort="a2"), observe([V2], ["v2"]), 280)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2" and result.events == []


def test_switch_back_is_refused_when_the_previous_server_is_gone() -> None:
    md, _ = _switched()
    md, result = run(with_annotations(md, abort="a1"), observe([V1, V2], ["v2"]), 230)
    assert md.status is not None and md.status.stable is not None
    assert md.status.stable.version == "v2"
    assert [e.reason for e in result.events] == ["SwitchBackRefused"]


def test_promotion_clears_the_candidates_analysis() -> None:
    # The P99ms column (status.lastAnalysis.p99Ms) must not show the last candidate's
    # latency as the stable version's once it is promoted.
    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromotionSeconds": 5}}
    md = rolling(strategy=strategy, analysis=LATENCY)
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], _preview(30)), 210)
    assert md.status is not None and md.status.last_analysis is not None
    md, _ = run(md, observe([V1, V2], ["v1", "v2"], _preview(30)), 215)
    assert md.status is not None and md.status.candidate is None
    assert md.status.last_analysis is None
    promoted = md.status.history[-1]
    assert promoted.action == "Promoted" and "last analysis Pass (n=30, p99 " in promoted.message


def test_a_pause_keeps_its_clock_while_the_candidate_server_restarts() -> None:
    # `pilotage up` stopped and started again: the candidate's server is down a while.
    steps = [{"setWeight": 50}, {"pause": {"duration": "60s"}}]
    md = rolling(strategy={"type": "Canary", "canary": {"steps": steps}})
    assert md.status is not None and md.status.current_step == 1
    started = md.status.step_started
    md, _ = run(md, observe([V1, V2], ["v1"]), 230)  # the candidate server is not ready
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 240)
    assert md.status is not None and md.status.step_started == started
    md, _ = run(md, observe([V1, V2], ["v1", "v2"]), 261)  # 60 s after the step began
    assert md.status is not None and md.status.candidate is None


def test_a_moved_endpoint_is_said_in_status_and_an_event() -> None:
    md = healthy()
    assert md.status is not None and md.status.endpoint == "http://127.0.0.1:9000"
    obs = observe([V1], ["v1"])
    moved = replace(
        obs,
        router=replace(
            obs.router, endpoint="http://127.0.0.1:9001", endpoint_problem="port 9000 was taken"
        ),
    )
    md, result = run(md, moved, 10)
    assert md.status is not None and md.status.endpoint == "http://127.0.0.1:9001"
    note = md.status.endpoint_note
    assert "endpoint moved from http://127.0.0.1:9000 to http://127.0.0.1:9001" in note
    assert "port 9000 was taken" in note
    assert [e.reason for e in result.events] == ["EndpointChanged"]
    md, result = run(md, moved, 20)
    assert result.events == [] and md.status is not None and md.status.endpoint_note == note


def test_strict_schema_reaches_the_servers() -> None:
    _, result = run(deployment(server={"strictSchema": True}), observe([V1], []), 0)
    [server] = [a for a in result.actions if isinstance(a, EnsureServer)]
    assert server.settings.strict_schema
    _, result = run(deployment(), observe([V1], []), 0)
    [server] = [a for a in result.actions if isinstance(a, EnsureServer)]
    assert not server.settings.strict_schema


def test_each_new_table_has_the_next_sequence_and_a_repeated_one_keeps_its_own() -> None:
    """The router orders tables by sequence (a late ConfigMap copy of a superseded table
    must not turn traffic back): it grows whenever the table changes, is kept in
    `status.routes`, and survives reconciles that send the same table again."""
    md, result = run(deployment(strategy=CANARY), observe([V1], ["v1"]), 0)
    first = routes(result)
    assert first is not None and first.table.sequence == 1
    assert md.status is not None and md.status.routes is not None
    assert (md.status.routes.revision, md.status.routes.sequence) == (first.table.revision, 1)
    md, result = run(md, observe([V1], ["v1"]), 5)
    again = routes(result)
    assert again is not None and again.table == first.table

    sequences = [1]
    md, _ = run(md, observe([V1, V2], ["v1"]), 199)
    for t in (200, 231, 262):  # the canary starts at 20 %, then 50 % after the timed pause
        md, result = run(md, observe([V1, V2], ["v1", "v2"]), t)
        table = routes(result)
        assert table is not None and table.table.sequence is not None
        if table.table.revision != first.table.revision and table.table.sequence != sequences[-1]:
            sequences.append(table.table.sequence)
        assert md.status is not None and md.status.routes is not None
        assert md.status.routes.sequence == table.table.sequence
    assert sequences == [1, 2, 3], sequences
    doc = table.table.to_document("iris", {"v1": "http://a:1", "v2": "http://b:1"})
    assert doc["sequence"] == 3


def test_a_status_restored_without_routes_numbers_above_the_routers_table() -> None:
    """A backup restored without status, or a status edited by hand: starting again at 1
    would have every table refused as older than the router's 17."""
    md, _ = run(deployment(), observe([V1], ["v1"]), 0)
    assert md.status is not None
    md = md.model_copy(update={"status": md.status.model_copy(update={"routes": None})})
    ahead = replace(stats_of(), revision="other", sequence=17)
    md, result = run(md, observe([V1], ["v1"], stats=ahead), 5)
    table = routes(result)
    assert table is not None and table.table.sequence == 18
    assert md.status is not None and md.status.routes is not None
    assert md.status.routes.sequence == 18
    # once the router reports 18 in use, the same table keeps it
    now = replace(stats_of(), revision=table.table.revision, sequence=18)
    md, result = run(md, observe([V1], ["v1"], stats=now), 10)
    again = routes(result)
    assert again is not None and again.table.sequence == 18
