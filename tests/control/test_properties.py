"""Invariants of the ModelDeployment reconciler over random sequences of what can happen.

A small simulated world (TrainingJobs appearing, servers becoming ready, router
counters growing fast or slow, people annotating, drift signals, time passing) is
driven by hypothesis; after every reconcile the invariants are checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pilotage.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from pilotage.control.types import (
    DriftSignal,
    EnsureServer,
    RemoveServer,
    Result,
    RouterStats,
    VariantStats,
)
from tests.control.factories import add, at, deployment, job, observe, routes, run, variant

STRATEGIES = [
    {"type": "Canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 60}]}},
    {
        "type": "Canary",
        "canary": {
            "steps": [
                {"setWeight": 25},
                {"pause": {"duration": "20s"}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 75},
            ]
        },
    },
    {"type": "BlueGreen", "blueGreen": {"autoPromotionSeconds": 15, "scaleDownDelaySeconds": 20}},
    {"type": "BlueGreen"},
    {"type": "Shadow", "shadow": {"duration": "25s"}},
]
ANALYSES = [
    {"interval": "10s", "minRequests": 5, "latency": {"p99Ms": 100}},
    {"interval": "10s", "minRequests": 5, "errorRate": {"max": 0.1}, "failureLimit": 1},
    {"interval": "10s", "minRequests": 5},
]

operations = st.one_of(
    st.tuples(st.just("wait"), st.integers(1, 40)),
    st.tuples(st.just("traffic"), st.sampled_from(["fast", "slow", "errors"])),
    st.tuples(st.just("wait"), st.integers(1, 12)),
    st.tuples(st.just("new_version"), st.booleans()),  # bool: gates passed
    st.tuples(st.just("ready"), st.integers(0, 3)),
    st.tuples(st.just("traffic"), st.sampled_from(["fast", "slow", "errors"])),
    st.tuples(st.just("promote"), st.sampled_from(["step", "full", "x"])),
    st.tuples(st.just("abort"), st.just("")),
    st.tuples(st.just("retry"), st.just("")),
    st.tuples(st.just("drift"), st.booleans()),
)


@dataclass
class World:
    jobs: list[Any] = field(default_factory=lambda: [job("v1", 0)])
    ready: set[str] = field(default_factory=set)
    ensured: set[str] = field(default_factory=set)
    counters: dict[tuple[str, str], VariantStats] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    drift: DriftSignal | None = None
    clock: float = 0
    tokens: int = 0

    def produced(self) -> set[str]:
        return {j.model_version for j in self.jobs if j.model_version}

    def newest(self) -> str:
        deployable = [j for j in self.jobs if j.gates_passed]
        return max(deployable, key=lambda j: j.created).model_version  # type: ignore[no-any-return]

    def stats(self) -> RouterStats:
        return RouterStats(variants=tuple(self.counters.values()))


def apply_op(world: World, md: ModelDeployment, op: tuple[str, Any]) -> None:
    kind, arg = op
    status = md.status or ModelDeploymentStatus()
    if kind == "wait":
        world.clock += arg
        world.ready |= world.ensured  # servers started a while ago are up by now
    elif kind == "new_version":
        n = len(world.jobs) + 1
        world.jobs.append(job(f"v{n}", world.clock + 0.5, gates=arg))
    elif kind == "ready":
        pending = sorted(world.ensured - world.ready)
        if pending:
            world.ready.add(pending[arg % len(pending)])
    elif kind == "traffic" and status.candidate is not None:
        role = {"Canary": "canary", "BlueGreen": "preview", "Shadow": "shadow"}[
            md.spec.strategy.type
        ]
        key = (role, status.candidate.version)
        burst = variant(
            role,
            key[1],
            20,
            errors=10 if arg == "errors" else 0,
            seconds=0.5 if arg == "slow" else 0.01,
        )
        world.counters[key] = add(world.counters[key], burst) if key in world.counters else burst
    elif kind in ("promote", "abort", "retry"):
        world.tokens += 1
        world.annotations[f"pilotage.dev/{kind}"] = (
            arg if arg in ("step", "full") else f"t{world.tokens}"
        )
    elif kind == "drift":
        # A monitor watches the stable version: its signal is about that one.
        watched = status.stable.version if status.stable else None
        world.drift = (
            DriftSignal("dm", 0.9, arg, arg, since=at(world.clock), version=watched)
            if arg
            else None
        )


def reconcile(world: World, md: ModelDeployment) -> tuple[ModelDeployment, Result[Any]]:
    meta = md.metadata.model_copy(update={"annotations": dict(world.annotations)})
    md = md.model_copy(update={"metadata": meta})
    obs = observe(world.jobs, world.ready, world.stats(), world.drift)
    md, result = run(md, obs, world.clock)
    for action in result.actions:
        if isinstance(action, EnsureServer):
            world.ensured.add(action.version)
        elif isinstance(action, RemoveServer):
            world.ensured.discard(action.version)
            world.ready.discard(action.version)
    return md, result


def check_invariants(
    world: World,
    before: ModelDeploymentStatus,
    md: ModelDeployment,
    result: Result[Any],
    promote_given: bool,
) -> None:
    status = md.status
    assert status is not None
    # Weights always sum to 100 and status.traffic is the table that was sent.
    table = routes(result)
    if table is not None:
        weights = table.table.weights()
        assert sum(weights.values()) == 100
        assert all(0 <= w <= 100 for w in weights.values())
        assert status.traffic == weights
        assert status.traffic_summary.startswith(" / ".join(f"{k} {v}" for k, v in weights.items()))
        for v in table.table.variants:
            if v.name in ("preview", "shadow"):
                assert v.weight == 0
    else:
        assert status.traffic == {}
    # Status never claims a version that no run produced.
    produced = world.produced()
    for ref in (status.stable, status.candidate, status.previous):
        assert ref is None or ref.version in produced
    # A rejected version gets no traffic and is not the candidate.
    if status.rejected_version is not None:
        assert status.candidate is None or status.candidate.version != status.rejected_version
        if table is not None:
            for v in table.table.variants:
                if v.version == status.rejected_version and v.name != "stable":
                    assert v.weight == 0
    # A pause without duration never advances without a promote.
    if (
        before.phase == "Paused"
        and before.candidate is not None
        and md.spec.strategy.type == "Canary"
        and not promote_given
    ):
        assert status.stable is None or status.stable.version != before.candidate.version
        if status.candidate is not None and status.candidate.version == before.candidate.version:
            assert status.current_step == before.current_step


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(STRATEGIES),
    analysis=st.sampled_from(ANALYSES),
    ops=st.lists(operations, min_size=1, max_size=60),
)
def test_rollout_invariants(
    strategy: dict[str, Any], analysis: dict[str, Any], ops: list[Any]
) -> None:
    world = World()
    md = deployment(strategy=strategy, analysis=analysis)
    md, _ = reconcile(world, md)
    rejected_at_version: dict[str, str] = {}
    # Every run starts with v1 healthy and v2 rolling out; the random part follows.
    for op in [("wait", 1), ("new_version", True), ("wait", 1), *ops]:
        before = md.status or ModelDeploymentStatus()
        handled = dict(before.handled_actions)
        apply_op(world, md, op)
        md, result = reconcile(world, md)
        promote_token = world.annotations.get("pilotage.dev/promote")
        promote_given = (
            promote_token is not None and handled.get("pilotage.dev/promote") != promote_token
        )
        check_invariants(world, before, md, result, promote_given)
        status = md.status
        assert status is not None
        # After a rollback the candidate stays at 0 % until a retry or a new version.
        retried = world.annotations.get("pilotage.dev/retry") not in (
            None,
            handled.get("pilotage.dev/retry"),
        )
        newest = world.newest()
        for version, wanted in list(rejected_at_version.items()):
            if retried or newest != wanted:
                del rejected_at_version[version]
            elif status.candidate is not None:
                assert status.candidate.version != version
        if status.rejected_version is not None:
            rejected_at_version[status.rejected_version] = newest
        for e in result.events:
            event(e.reason)
