"""A router that refuses the routing table: the reason reaches the ModelDeployment's status
(message, Ready condition, one Warning event), only while it is about the table asked for."""

from __future__ import annotations

from dataclasses import replace

from pilotage.api.conditions import get
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.control.modeldeployment import TABLE_REJECTED
from pilotage.control.types import (
    ModelDeploymentObservation,
    RouterStats,
    RouteTable,
    TableRejection,
)
from pilotage.wire.router_stats import parse_router_stats as router_stats
from tests.control.factories import deployment, job, observe, routes, run

V1, V2 = job("v1", 0), job("v2", 100)
REASON = "mode: 'shadow' needs a shadow block"
CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}


def refusing(
    obs: ModelDeploymentObservation, revision: str | None, live: str | None = None
) -> ModelDeploymentObservation:
    """`obs` with a router that refused the table `revision` and still uses `live`."""
    assert obs.router is not None
    router = replace(
        obs.router,
        stats=RouterStats(revision=live),
        rejection=TableRejection(revision, REASON),
    )
    return replace(obs, router=router)


def pushed(md: ModelDeployment, obs: ModelDeploymentObservation, t: float) -> RouteTable:
    _, result = run(md, obs, t)
    action = routes(result)
    assert action is not None
    return action.table


def test_a_refused_table_is_explained_until_the_router_takes_one() -> None:
    md, _ = run(deployment(), observe([V1], []), 0)
    table = pushed(md, observe([V1], ["v1"]), 1)

    md, result = run(md, refusing(observe([V1], ["v1"]), table.revision), 2)
    status = md.status
    assert status is not None and status.phase == "Progressing"
    assert status.message == f"router rejected the routing table: {REASON}"
    ready = get(status.conditions, "Ready")
    assert ready is not None and ready.status == "False" and ready.reason == TABLE_REJECTED
    assert ready.message == status.message
    warnings = [e for e in result.events if e.reason == TABLE_REJECTED]
    assert [(e.type, e.message) for e in warnings] == [("Warning", status.message)]
    assert routes(result) is not None, "the table is pushed again"
    assert result.requeue_after is not None

    # The same refusal again: no second event.
    md, result = run(md, refusing(observe([V1], ["v1"]), table.revision), 3)
    assert md.status is not None and md.status.message.startswith("router rejected")
    assert not [e for e in result.events if e.reason == TABLE_REJECTED]

    # The router uses the table after all (a later push): Healthy.
    md, _ = run(md, refusing(observe([V1], ["v1"]), table.revision, live=table.revision), 4)
    assert md.status is not None and md.status.phase == "Healthy"


def test_a_refusal_without_a_revision_counts_one_about_another_table_does_not() -> None:
    md, _ = run(deployment(), observe([V1], []), 0)
    md, _ = run(md, refusing(observe([V1], ["v1"]), None), 1)
    assert md.status is not None and md.status.message.startswith("router rejected")

    md, _ = run(md, refusing(observe([V1], ["v1"]), "an-older-table"), 2)
    assert md.status is not None and md.status.phase == "Healthy"


def test_a_refused_rollout_table_replaces_the_rollout_message() -> None:
    md, _ = run(deployment(strategy=CANARY), observe([V1], ["v1"]), 0)
    md, _ = run(md, observe([V1, V2], ["v1"]), 100)
    obs = observe([V1, V2], ["v1", "v2"])
    table = pushed(md, obs, 101)
    assert table.weights() == {"stable": 80, "canary": 20}
    md, _ = run(md, refusing(obs, table.revision), 101)
    status = md.status
    assert status is not None and status.candidate is not None
    assert status.phase == "Progressing"
    assert status.message == f"router rejected the routing table: {REASON}"


def test_router_stats_carry_the_reload_errors() -> None:
    doc = {"revision": "r1", "reloadErrors": 2, "lastReloadError": "routes.json: mode: bad"}
    stats = router_stats(doc)
    assert stats.reload_errors == 2 and stats.last_reload_error == "routes.json: mode: bad"
    clean = router_stats({"revision": "r1", "reloadErrors": 0, "lastReloadError": None})
    assert clean.reload_errors == 0 and clean.last_reload_error is None
