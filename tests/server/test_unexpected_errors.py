"""A bug inside the server is a 500 with a JSON error, and the metrics count it as one.

No request from outside reaches such a bug (tests/server/test_fuzz.py looks for them),
so this test runs the ASGI application in-process and breaks its drift counter.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pilotage.server.app import ServerApp, ServerOptions
from pilotage.server.engine import Prediction
from pilotage.server.model import load_model
from pilotage.server.rows import Rows
from tests.server.artifacts import build_iris
from tests.server.test_observability import metric


async def test_a_bug_during_inference_is_counted_as_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = build_iris(tmp_path / "iris")
    app = ServerApp(load_model(artifact.uri, tmp_path / "cache"), ServerOptions())

    def broken(rows: Rows, prediction: Prediction) -> None:
        raise RuntimeError("a bug in drift counting")

    monkeypatch.setattr(app.drift, "observe", broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
        answer = await client.post(
            "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
        )
        assert answer.status_code == 500
        assert "internal server error" in answer.json()["error"]
        text = (await client.get("/metrics")).text
    assert metric(text, "pilotage_server_requests_total", protocol="v1", code="500") == 1
    assert metric(text, "pilotage_server_requests_total", protocol="v1", code="200") == 0
