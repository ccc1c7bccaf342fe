"""A routing table the local router refuses is explained: the local platform reports the
refusal (the router's own check of the routing file) in `RouterState.rejection`, for a
router that exits on its first table and for a running one that keeps its old table."""

from __future__ import annotations

from pathlib import Path

from pilotage.control.types import (
    EnsureRouter,
    EnsureServer,
    RouterState,
    RouteTable,
    RouteVariant,
    SetRoutes,
)
from pilotage.local.up import build_runtime
from tests.support.models import build_model
from tests.support.procs import wait_until

STABLE = (RouteVariant("stable", "v1", 100),)
VALID = RouteTable(mode="canary", variants=STABLE, revision="good")
# Mode shadow without a shadow block: the router refuses it.
REFUSED = RouteTable(mode="shadow", variants=STABLE, revision="bad")


def test_a_refused_routing_table_is_reported(tmp_path: Path) -> None:
    model = build_model(tmp_path / "model")
    _, runtime = build_runtime(tmp_path / "state")
    platform = runtime.platform
    seen: list[RouterState | None] = []

    def observed() -> RouterState | None:
        seen.append(platform.router("default", "iris"))
        return seen[-1]

    try:
        platform.carry_out(EnsureServer("iris", "v1", model.as_uri(), 1))
        platform.carry_out(EnsureRouter("iris", 1))

        # The first table is refused: the router exits at start, and the platform says why.
        platform.carry_out(SetRoutes("iris", REFUSED))
        wait_until(
            lambda: (s := observed()) is not None and s.rejection is not None,
            what=f"the refusal of the first table (last seen {seen[-1:]})",
        )
        state = seen[-1]
        assert state is not None and state.rejection is not None and not state.ready
        assert state.rejection.revision == "bad"
        assert "shadow" in state.rejection.reason

        # A valid table: the router runs it, nothing is refused.
        platform.carry_out(SetRoutes("iris", VALID))
        platform.carry_out(EnsureRouter("iris", 1))
        wait_until(
            lambda: (
                (s := observed()) is not None
                and s.ready
                and s.stats is not None
                and s.stats.revision == "good"
            ),
            what=f"the router on the valid table (last seen {seen[-1:]})",
        )
        assert seen[-1] is not None and seen[-1].rejection is None

        # A refused reload: the router keeps the old table and counts the error.
        platform.carry_out(SetRoutes("iris", REFUSED))
        wait_until(
            lambda: (
                (s := observed()) is not None
                and s.stats is not None
                and s.stats.last_reload_error is not None
            ),
            what=f"the refused reload (last seen {seen[-1:]})",
        )
        state = seen[-1]
        assert state is not None and state.ready and state.stats is not None
        assert state.stats.revision == "good" and state.stats.reload_errors == 1
        assert state.rejection is not None and state.rejection.revision == "bad"
        assert state.rejection.reason == state.stats.last_reload_error
    finally:
        platform.stop_everything()
