"""Health, metadata, metrics and drift counters follow the traffic."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.server.conftest import Server, StartServer

pytestmark = pytest.mark.xdist_group("server-observability")


@pytest.fixture(scope="module")
def iris(start_server: StartServer) -> Iterator[Server]:
    with start_server("iris", "--reservoir-size", "5", "--name", "flowers") as server:
        yield server


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_health_and_server_metadata(iris: Server) -> None:
    assert httpx.get(iris.url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(iris.url + "/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(iris.url + "/v2").json()
    assert meta["name"] == "pilotage" and "binary_tensor_data" in meta["extensions"]
    assert httpx.get(iris.url + "/v2/models/flowers/ready").json()["ready"] is True
    assert httpx.get(iris.url + "/v2/models/flowers/versions/v1/ready").status_code == 200
    assert httpx.get(iris.url + "/v2/models/iris/ready").status_code == 404  # renamed by --name
    assert httpx.get(iris.url + "/v1/models/flowers").json() == {
        "name": "flowers",
        "version": "v1",
        "ready": True,
    }


def test_model_metadata_from_card_and_graph(iris: Server) -> None:
    meta = httpx.get(iris.url + "/v2/models/flowers").json()
    assert meta["name"] == "flowers" and meta["versions"] == ["v1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert [f["name"] for f in meta["parameters"]["features"]] == iris.artifact.card.feature_names()
    assert meta == httpx.get(iris.url + "/v2/models/flowers/versions/v1").json()
    assert httpx.get(iris.url + "/openapi.json").json()["openapi"].startswith("3.")


def test_metrics_and_drift_counters_move_with_traffic(iris: Server) -> None:
    card = iris.artifact.card
    x = iris.artifact.frame.to_numpy(dtype=np.float32)[40:52]
    before = httpx.get(iris.url + "/metrics").text
    drift_before = httpx.get(iris.url + "/v1/models/flowers/drift").json()

    url = iris.url + "/v1/models/flowers:predict"
    predictions = []
    for row in x:
        r = httpx.post(url, json={"instances": [row.tolist()]})
        predictions += r.json()["predictions"]
    assert httpx.post(url, json={"instances": [[1, 2]]}).status_code == 400

    after = httpx.get(iris.url + "/metrics").text
    labels = {"model": "flowers", "version": "v1"}

    def delta(name: str, **extra: str) -> float:
        return metric(after, name, **labels, **extra) - metric(before, name, **labels, **extra)

    assert delta("pilotage_server_requests_total", protocol="v1", code="200") == len(x)
    assert delta("pilotage_server_requests_total", protocol="v1", code="400") == 1
    assert delta("pilotage_server_request_duration_seconds_count") == len(x) + 1
    assert delta("pilotage_server_inference_duration_seconds_count") == len(x)
    for cls in ("0", "1", "2"):
        assert delta("pilotage_prediction_total", **{"class": cls}) == predictions.count(int(cls))
    for j, feature in enumerate(card.features):
        edges = card.baseline.features[feature.name].edges  # type: ignore[union-attr]
        bins = np.searchsorted(edges, x[:, j].astype(np.float64), side="right")
        for b in range(len(edges) + 1):
            want = int((bins == b).sum())
            assert delta("pilotage_feature_bin_total", feature=feature.name, bin=str(b)) == want

    drift = httpx.get(iris.url + "/v1/models/flowers/drift").json()
    assert drift["rows"] - drift_before["rows"] == len(x)
    assert set(drift["features"]) == set(card.feature_names())
    assert drift["predictions"]["kind"] == "classes"
    counts = drift["predictions"]["counts"]
    assert sum(counts.values()) - sum(drift_before["predictions"]["counts"].values()) == len(x)
    reservoir = drift["reservoir"]
    assert reservoir["capacity"] == 5 and reservoir["columns"] == card.feature_names()
    np.testing.assert_allclose(reservoir["rows"], x[-5:], rtol=1e-6)  # the 5 most recent, in order


def test_metric_names_are_the_contract(iris: Server) -> None:
    r = httpx.post(iris.url + "/v1/models/flowers:predict", json={"instances": [[5, 3, 1, 0.2]]})
    assert r.status_code == 200
    text = httpx.get(iris.url + "/metrics").text
    names = {line.split("{")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert {
        "pilotage_server_requests_total",
        "pilotage_server_request_duration_seconds_bucket",
        "pilotage_server_request_duration_seconds_count",
        "pilotage_server_inference_duration_seconds_bucket",
        "pilotage_feature_bin_total",
        "pilotage_prediction_total",
    } <= names
    # batching is off on this server: no batch-size histogram
    assert "pilotage_server_batch_size_count" not in names


def test_the_model_card_is_served_as_loaded(iris: Server) -> None:
    """The operator reads the baseline here when it cannot mount the artifact store."""
    from pilotage.api.modelcard import ModelCard

    served = ModelCard.model_validate(httpx.get(iris.url + "/v1/models/flowers/card").json())
    on_disk = ModelCard.model_validate_json((iris.artifact.directory / "model.json").read_bytes())
    assert served == on_disk
    assert served.baseline is not None and served.baseline.features
    assert httpx.get(iris.url + "/v1/models/other/card").status_code == 404
