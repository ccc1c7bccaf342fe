"""Values outside the Dataset schema (below min, above max, not an int, not a bool) are
scored and counted by default, per feature, in /metrics and the drift counters; a server
started with --strict-schema answers them with a 400 naming the value and the rule."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.artifacts import Artifact
from tests.server.conftest import Server, serve

pytestmark = pytest.mark.xdist_group("server-schema")

GOOD = {"amount": 10.0, "channel": "web", "vip": 1, "items": 2}


@pytest.fixture(scope="module")
def bounded(models: dict[str, Artifact], tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The churn model whose card says `amount` has `min: 0` (as a Dataset schema would)."""
    source = models["churn"]
    dest = tmp_path_factory.mktemp("bounded") / "churn"
    shutil.copytree(source.directory, dest)
    card = json.loads((dest / "model.json").read_text())
    for feature in card["features"]:
        if feature["name"] == "amount":
            feature["min"] = 0.0
    (dest / "model.json").write_text(json.dumps(card))
    return Artifact(dest, source.card, source.estimator, source.frame)


@pytest.fixture
def lenient(bounded: Artifact, tmp_path: Path) -> Iterator[Server]:
    with serve(bounded, tmp_path) as server:
        yield server


@pytest.fixture
def strict(bounded: Artifact, tmp_path: Path) -> Iterator[Server]:
    with serve(bounded, tmp_path, "--strict-schema") as server:
        yield server


def _predict(server: Server, *instances: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/models/churn:predict", json={"instances": list(instances)})


def _metric(server: Server, feature: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("pilotage_feature_out_of_schema_total{") and (
            f'feature="{feature}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no out-of-schema metric for {feature}")


def test_out_of_schema_values_are_scored_and_counted(lenient: Server) -> None:
    r = _predict(
        lenient,
        GOOD,
        {**GOOD, "amount": -5.0},
        {**GOOD, "items": 25.7},
        {**GOOD, "vip": 3},
        {**GOOD, "amount": 0.0},  # the bound itself is inside
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5
    drift = httpx.get(lenient.url + "/v1/models/churn/drift").json()
    assert drift["outOfSchema"] == {"amount": 1, "vip": 1, "items": 1}
    assert _metric(lenient, "amount") == 1 and _metric(lenient, "items") == 1
    assert _metric(lenient, "vip") == 1


def test_a_strict_server_refuses_them_naming_the_value_and_the_rule(strict: Server) -> None:
    r = _predict(strict, GOOD, {**GOOD, "amount": -5.0})
    assert r.status_code == 400
    assert r.json()["error"].startswith(
        "instances: row 1: feature 'amount' value -5 is below min 0"
    )
    r = _predict(strict, {**GOOD, "items": 25.7})
    assert (
        r.status_code == 400 and "'items' value 25.7000008 is not a valid int" in r.json()["error"]
    )
    one = {"shape": [1], "datatype": "FP32"}
    inputs = [
        {"name": "amount", **one, "data": [10.0]},
        {"name": "channel", "shape": [1], "datatype": "BYTES", "data": ["web"]},
        {"name": "vip", **one, "data": [2.0]},
        {"name": "items", **one, "data": [2.0]},
    ]
    r = httpx.post(strict.url + "/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400 and "'vip' value 2 is not a valid bool" in r.json()["error"]
    assert _predict(strict, GOOD).status_code == 200
    drift = httpx.get(strict.url + "/v1/models/churn/drift").json()
    assert drift["outOfSchema"] == {"amount": 0, "vip": 0, "items": 0}
