"""The ModelDeployment reconciler with `spec.autoscaling`: replicas per variant in the
actions and the status, scale to zero and back, the table's activation settings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pilotage.api.modeldeployment import ModelDeployment
from pilotage.control.autoscale import LoadHistory
from pilotage.control.types import (
    EnsureServer,
    LoadSample,
    ModelDeploymentObservation,
    ServerState,
)
from tests.control.factories import at, deployment, job, observe, routes, run, stats_of, variant

AUTOSCALING = {
    "minReplicas": 0,
    "maxReplicas": 6,
    "target": {"inFlight": 2},
    "window": "4s",
    "panicWindow": "2s",
    "scaleDownDelay": "4s",
    "scaleToZeroAfter": "10s",
    "activationTimeout": "5s",
    "maxHeldRequests": 50,
}


def replicas_of(result: Any) -> dict[str, int]:
    return {a.version: a.replicas for a in result.actions if isinstance(a, EnsureServer)}


def with_load(
    obs: ModelDeploymentObservation,
    samples: dict[tuple[str, str], tuple[LoadSample, ...]],
    ready: dict[str, int],
) -> ModelDeploymentObservation:
    servers = tuple(ServerState(v, n > 0, ready_replicas=n) for v, n in ready.items())
    return replace(obs, load=samples, servers=servers)


def steady(name: str, version: str, start: float, end: float, concurrency: float) -> tuple:
    """Samples every 2 s from ``start`` to ``end`` at a steady concurrency."""
    out = []
    t = start
    while t <= end:
        out.append(LoadSample(at(t), int(t), concurrency * t, round(concurrency)))
        t += 2
    return tuple(out)


def first(md: ModelDeployment) -> tuple[ModelDeployment, Any]:
    obs = observe([job("1")], ready=["1"])
    return run(md, obs, 0)


def test_without_autoscaling_every_version_gets_spec_replicas_and_no_replica_status() -> None:
    md, result = first(deployment(replicas=3))
    assert replicas_of(result) == {"1": 3}
    assert md.status is not None and md.status.replicas == {}
    table = routes(result)
    assert table is not None and table.table.activation is None


def test_replicas_follow_the_load_and_show_in_status_and_events() -> None:
    md, result = first(deployment(replicas=1, autoscaling=AUTOSCALING))
    assert replicas_of(result) == {"1": 1}
    table = routes(result)
    assert table is not None and table.table.activation is not None
    assert table.table.activation.timeout_seconds == 5 and table.table.activation.max_held == 50
    assert table.table.to_document("iris", {"1": "http://x:1"})["activation"] == {
        "timeoutSeconds": 5,
        "maxHeld": 50,
    }
    # 9 in flight, 2 per replica: 5
    obs = with_load(
        observe([job("1")], ready=["1"]),
        {("stable", "1"): steady("stable", "1", 0, 4, 9)},
        {"1": 1},
    )
    md, result = run(md, obs, 4)
    assert replicas_of(result) == {"1": 5}
    assert md.status is not None
    entry = md.status.replicas["stable"]
    assert (entry.version, entry.desired, entry.ready) == ("1", 5, 1)
    assert md.status.replicas_summary == "stable 1/5"
    assert [e.reason for e in result.events if e.reason.startswith("Scaled")] == ["ScaledUp"]
    # scaling in progress: looked at again soon, to route to new replicas once ready
    assert result.requeue_after is not None and result.requeue_after <= 0.1


def test_idle_goes_to_zero_stays_served_and_a_held_request_wakes_it() -> None:
    md, _ = first(deployment(replicas=1, autoscaling=AUTOSCALING))
    idle = tuple(LoadSample(at(t), 5, 1.0) for t in range(0, 14, 2))
    obs = with_load(observe([job("1")], ready=["1"]), {("stable", "1"): idle}, {"1": 1})
    md, result = run(md, obs, 12)
    assert replicas_of(result) == {"1": 0}
    assert md.status is not None and md.status.replicas["stable"].desired == 0
    assert any(e.reason == "ScaledToZero" for e in result.events)
    # no server runs now: the deployment still serves (the router holds and wakes)
    zero = with_load(observe([job("1")], ready=[]), {("stable", "1"): idle}, {})
    md, result = run(md, zero, 14)
    assert md.status is not None and md.status.phase == "Healthy", md.status.message
    assert replicas_of(result) == {"1": 0}
    assert routes(result) is not None
    held = (*idle, LoadSample(at(15), 5, 1.0, held=3))
    woken = with_load(observe([job("1")], ready=[]), {("stable", "1"): held}, {})
    md, result = run(md, woken, 15)
    assert replicas_of(result) == {"1": 2}  # ceil(3 held / 2 per replica)
    assert [e.reason for e in result.events if e.reason == "Activated"] == ["Activated"]
    assert result.requeue_after is not None and result.requeue_after <= 0.1


def test_the_canary_scales_on_its_own_load_and_keeps_its_weight() -> None:
    md = deployment(
        replicas=1,
        autoscaling={**AUTOSCALING, "minReplicas": 1},
        strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    )
    md, _ = first(md)
    both = observe([job("1"), job("2", created=1)], ready=["1", "2"])
    md, result = run(md, both, 1)
    table = routes(result)
    assert table is not None and table.table.weights() == {"stable": 80, "canary": 20}
    load = {
        ("stable", "1"): steady("stable", "1", 2, 6, 8),
        ("canary", "2"): steady("canary", "2", 2, 6, 1),
    }
    md, result = run(md, with_load(both, load, {"1": 1, "2": 1}), 6)
    assert replicas_of(result) == {"1": 4, "2": 1}
    table = routes(result)
    assert table is not None and table.table.weights() == {"stable": 80, "canary": 20}
    assert md.status is not None and md.status.replicas_summary == "stable 1/4 / canary 1/1"


def test_load_history_keeps_samples_per_variant_and_version_within_the_window() -> None:
    history = LoadHistory()
    for t in range(0, 30, 2):
        stats = stats_of(
            replace(variant("stable", "1", requests=t), busy_seconds=t / 2, in_flight=1),
            replace(variant("canary", "2", requests=2 * t), held=0),
        )
        history.add("iris", stats, at(t), keep=10)
    samples = history.samples("iris")
    assert set(samples) == {("stable", "1"), ("canary", "2")}
    stable = samples[("stable", "1")]
    assert [s.time for s in stable] == [at(t) for t in range(18, 30, 2)]
    assert stable[-1] == LoadSample(at(28), 28, 14.0, 1, 0)
    # a variant gone from the router's stats is forgotten
    history.add("iris", stats_of(variant("stable", "1", requests=30)), at(30), keep=10)
    assert set(history.samples("iris")) == {("stable", "1")}
    history.forget("iris")
    assert history.samples("iris") == {}
