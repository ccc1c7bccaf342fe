"""A new rollout strategy and a new retrain trigger are one class each plus one
registration, as docs/extending.md says: toy ones are registered here through the public
registries and drive the pure reconcilers end to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, get_args

import pytest

from pilotage.api.driftmonitor import Trigger
from pilotage.api.modeldeployment import (
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Strategy,
)
from pilotage.control.strategies import (
    STRATEGIES,
    RolloutStrategy,
    register_strategy,
    unregister_strategy,
)
from pilotage.control.triggers import (
    TRIGGERS,
    RetrainTrigger,
    Tick,
    register_trigger,
    unregister_trigger,
)
from pilotage.control.types import EnsureServer
from tests.control.factories import deployment, job, observe, routes, run
from tests.control.test_driftmonitor import Server, created, monitor, step
from tests.control.test_driftmonitor import observe as observe_monitor

if TYPE_CHECKING:
    from pilotage.control.rollout import Rollout

V1, V2 = job("v1", 0), job("v2", 100)


class HalfAndHalf(RolloutStrategy):
    """Half the traffic to the candidate as soon as it is ready, promoted a minute later."""

    type = "HalfAndHalf"
    candidate_role = "canary"
    mode = "canary"
    shares_traffic = True

    def weight(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> int:
        return 50

    def advance(self, rollout: Rollout, promote_requested: bool) -> None:
        remaining = 60 - rollout.step_elapsed()
        if remaining > 0:
            rollout.waiting = "half and half"
            rollout.wait(remaining)
            return
        rollout.promote("a minute at half")


class RowQuota(RetrainTrigger):
    """Retrain once the servers have scored `ROWS` rows in all, once."""

    name = "rowQuota"
    ROWS = 1000
    TAKEN = "rowQuotaTaken"

    def fired(self, tick: Tick) -> str | None:
        rows = sum(c.rows for c in tick.obs.counters)
        if rows >= self.ROWS and not tick.checkpoint.get(self.TAKEN):
            return f"{rows} rows served (quota {self.ROWS})"
        return None

    def taken(self, tick: Tick) -> None:
        tick.checkpoint[self.TAKEN] = True

    def ignored(self, tick: Tick) -> None:
        self.taken(tick)


@pytest.fixture
def toys() -> Iterator[None]:
    """The toy strategy and trigger, registered for one test only."""
    register_strategy(HalfAndHalf())
    register_trigger(RowQuota())
    yield
    unregister_strategy(HalfAndHalf.type)
    unregister_trigger(RowQuota.name)


def with_strategy(md: ModelDeployment, kind: str) -> ModelDeployment:
    """The toy has no API fields (a real strategy adds its `type` value and settings to
    pilotage/api/modeldeployment.py): set the type without validation."""
    strategy = md.spec.strategy.model_copy(update={"type": kind})
    return md.model_copy(update={"spec": md.spec.model_copy(update={"strategy": strategy})})


@pytest.mark.usefixtures("toys")
def test_a_registered_strategy_drives_a_rollout() -> None:
    md = with_strategy(deployment(strategy={"type": "Canary"}), "HalfAndHalf")
    md, _ = run(md, observe([V1], ["v1"]), 0)
    md, result = run(md, observe([V1, V2], ["v1"]), 100)
    assert md.status is not None and md.status.candidate is not None
    assert md.status.history[-1].reason == "HalfAndHalf"
    assert [a.version for a in result.actions if isinstance(a, EnsureServer)] == ["v1", "v2"]
    table = routes(result)
    assert table is not None and table.table.weights() == {"stable": 100}

    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 110)
    table = routes(result)
    assert table is not None and table.table.weights() == {"stable": 50, "canary": 50}
    assert table.table.mode == "canary"
    assert md.status is not None and md.status.phase == "Progressing"
    assert md.status.message == "half and half" and result.requeue_after == 2.0

    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 169)
    assert md.status is not None and md.status.candidate is not None
    md, result = run(md, observe([V1, V2], ["v1", "v2"]), 170)
    assert md.status is not None and md.status.candidate is None
    assert md.status.stable is not None and md.status.stable.version == "v2"
    assert md.status.history[-1].reason == "a minute at half"
    assert "Promoted" in [e.reason for e in result.events]
    table = routes(result)
    assert table is not None and table.table.weights() == {"stable": 100}


@pytest.mark.usefixtures("toys")
def test_a_registered_trigger_retrains_after_the_builtin_ones() -> None:
    server = Server()
    dm = monitor(annotations={"pilotage.dev/retrain": "now"})
    dm, result = step(dm, observe_monitor(server), 0)
    [first] = created(result)
    assert first.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "manual"

    server.send(1200, shifted=False)
    dm, result = step(dm, observe_monitor(server), 60)
    assert created(result) == []  # inside the cooldown
    assert dm.status is not None and "(rowQuota, " in dm.status.message

    dm, result = step(dm, observe_monitor(server), 700)
    [second] = created(result)
    assert second.manifest["metadata"]["labels"]["pilotage.dev/trigger"] == "rowQuota"
    assert dm.status is not None and dm.status.last_retrain is not None
    assert dm.status.last_retrain.trigger == "rowQuota"
    assert dm.status.last_retrain.message == "1200 rows served (quota 1000)"

    server.send(1200, shifted=False)
    dm, result = step(dm, observe_monitor(server), 1400)
    assert created(result) == []  # taken once


@pytest.mark.usefixtures("toys")
def test_a_registered_trigger_is_told_when_there_is_nothing_to_retrain_with() -> None:
    server = Server()
    dm = monitor(onDrift={"cooldown": "10m"})
    dm, _ = step(dm, observe_monitor(server), 0)
    server.send(1200, shifted=False)
    dm, result = step(dm, observe_monitor(server), 60)
    assert created(result) == []
    assert dm.status is not None and dm.status.checkpoint is not None
    assert dm.status.checkpoint[RowQuota.TAKEN] is True


def test_every_builtin_is_an_api_value_and_names_are_unique() -> None:
    assert sorted(STRATEGIES) == sorted(get_args(Strategy.model_fields["type"].annotation))
    assert sorted(t.name for t in TRIGGERS) == sorted(get_args(Trigger))
    with pytest.raises(ValueError, match="already registered"):
        register_strategy(STRATEGIES["Canary"])
    with pytest.raises(ValueError, match="already registered"):
        register_trigger(TRIGGERS[0])


def test_the_strategy_validates_its_own_settings() -> None:
    md = deployment(strategy={"type": "Shadow", "shadow": {"duration": "0s"}})
    md, result = run(md, observe([V1], ["v1"]), 0)
    assert md.status is not None and md.status.phase == "Pending"
    assert md.status.message == "spec.strategy.shadow.duration: must be longer than 0s"
    assert [e.reason for e in result.events] == ["InvalidSpec"]
