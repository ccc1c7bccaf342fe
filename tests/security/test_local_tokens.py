"""The embedded runtime runs each router with an admin port and its own tokens: the stats
it judges come from the admin port, forcing a variant (blue-green preview) needs the
deployment's variant token, and feedback needs a token when the spec asks for one."""

from __future__ import annotations

import json
from pathlib import Path

from pilotage.control.types import EnsureRouter, EnsureServer, RouteTable, RouteVariant, SetRoutes
from pilotage.local.up import build_runtime
from tests.router.traffic import Answer, Client
from tests.support.models import build_model
from tests.support.procs import wait_until

ROW = [[5.1, 3.5, 1.4, 0.2]]
TABLE = RouteTable(
    mode="bluegreen",
    variants=(RouteVariant("stable", "v1", 100), RouteVariant("preview", "v2", 0)),
    revision="one",
)


def test_local_router_tokens(tmp_path: Path) -> None:
    models = {v: build_model(tmp_path / v, version=v) for v in ("v1", "v2")}
    state_dir = tmp_path / "state"
    _, runtime = build_runtime(state_dir)
    platform = runtime.platform
    try:
        for version, model in models.items():
            platform.carry_out(EnsureServer("iris", version, model.as_uri(), 1))
        ensure = EnsureRouter("iris", 1, feedback_token_secret="labels")
        platform.carry_out(ensure)
        platform.carry_out(SetRoutes("iris", TABLE))
        platform.carry_out(ensure)
        wait_until(
            lambda: (
                (s := platform.router("default", "iris")) is not None
                and s.ready
                and s.stats is not None
                and s.stats.revision == "one"
            ),
            60,
            what="the router's stats through its admin port",
        )
        endpoint = platform.router_endpoint("iris")
        assert endpoint is not None
        client = Client(endpoint)
        assert client.request("GET", "/pilotage/stats").status == 404

        tokens = state_dir / "tokens"
        assert oct((tokens / "router-iris.variant").stat().st_mode & 0o777) == "0o600"
        variant_token = (tokens / "router-iris.variant").read_text().strip()
        refused = client.predict(ROW, {"x-pilotage-variant": "preview"})
        assert refused.status == 403
        headers = {"x-pilotage-variant": "preview", "x-pilotage-variant-token": variant_token}
        # 502 until the preview server listens
        wait_until(lambda: client.predict(ROW, headers).status == 200, 60, what="preview up")
        preview = client.predict(ROW, headers)
        assert (preview.status, preview.variant, preview.version) == (200, "preview", "v2")

        # the stable server may still be starting (502): its first answer is the one scored
        answers: list[Answer] = []
        wait_until(
            lambda: answers.append(client.predict(ROW)) or answers[-1].status == 200,
            60,
            what="stable up",
        )
        answer = answers[-1]
        assert answer.variant == "stable"
        item = {"feedback": [{"requestId": answer.request_id, "label": 0}]}
        assert client.request("POST", "/v1/feedback", item).status == 401
        feedback_token = (tokens / "router-iris.feedback").read_text().strip()
        ok = client.request(
            "POST", "/v1/feedback", item, {"authorization": f"Bearer {feedback_token}"}
        )
        assert ok.status == 200 and json.loads(ok.body)["recorded"] == 1
    finally:
        platform.stop_everything()
