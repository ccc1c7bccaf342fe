"""Every routing table a ModelDeployment can call for is one the router accepts: the same
document goes to `pilotage route --config` locally and to `PUT /admin/routes` on a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from pilotage.control.routes import build_table
from pilotage.wire.routes import parse_table
from tests.control.factories import deployment

STRATEGIES: list[dict[str, Any]] = [
    {"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    {"type": "BlueGreen", "blueGreen": {}},
    {"type": "Shadow", "shadow": {"percent": 50, "duration": "10m", "promote": True}},
]
URLS = {"v1": "http://127.0.0.1:8001", "v2": "http://127.0.0.1:8002"}


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s["type"])
@pytest.mark.parametrize("candidate", [None, "v2"], ids=["stable-only", "with-candidate"])
def test_the_router_accepts_every_table(strategy: dict[str, Any], candidate: str | None) -> None:
    spec = deployment(strategy=strategy).spec
    table = build_table(spec, "v1", candidate, canary_weight=20)
    routed = parse_table(table.to_document("iris", URLS))
    assert routed.weights()["stable"] == (80 if candidate and strategy["type"] == "Canary" else 100)
    if candidate and strategy["type"] == "Shadow":
        assert routed.mode == "shadow" and routed.shadow is not None
