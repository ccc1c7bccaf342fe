"""Predictions through every protocol equal scikit-learn's on the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.server.conftest import Server, StartServer

pytestmark = pytest.mark.xdist_group("server-inference")
TOL = 1e-5


@pytest.fixture(scope="module")
def iris(start_server: StartServer) -> Iterator[Server]:
    with start_server("iris") as server:
        yield server


@pytest.fixture(scope="module")
def churn(start_server: StartServer) -> Iterator[Server]:
    with start_server("churn") as server:
        yield server


@pytest.fixture(scope="module")
def diabetes(start_server: StartServer) -> Iterator[Server]:
    with start_server("diabetes", "--max-batch-size", "32", "--max-batch-wait-us", "2000") as s:
        yield s


def iris_rows(server: Server, n: int = 20) -> np.ndarray:
    frame = server.artifact.frame
    return frame.to_numpy(dtype=np.float32)[:: max(1, len(frame) // n)][:n]


def expected(server: Server, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model = server.artifact.estimator
    return model.predict(x), model.predict_proba(x)


def test_v1_list_instances_match_sklearn(iris: Server) -> None:
    x = iris_rows(iris)
    r = httpx.post(f"{iris.url}/v1/models/iris:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    labels, probs = expected(iris, x)
    body = r.json()
    assert body["predictions"] == labels.tolist()
    np.testing.assert_allclose(body["probabilities"], probs, atol=TOL)


def test_v1_object_instances_match_list_instances(iris: Server) -> None:
    x = iris_rows(iris, 5)
    names = iris.artifact.card.feature_names()
    # keys in reverse order: objects are matched by name, not position
    instances = [
        {n: float(v) for n, v in reversed(list(zip(names, row, strict=True)))} for row in x
    ]
    r = httpx.post(f"{iris.url}/v1/models/iris:predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    labels, probs = expected(iris, x)
    assert r.json()["predictions"] == labels.tolist()
    np.testing.assert_allclose(r.json()["probabilities"], probs, atol=TOL)


def test_v2_json_matrix_and_per_feature_tensors(iris: Server) -> None:
    x = iris_rows(iris, 7)
    labels, probs = expected(iris, x)
    matrix = {
        "inputs": [
            {"name": "input", "shape": [7, 4], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    names = iris.artifact.card.feature_names()
    per_feature = {
        "id": "req-1",
        "inputs": [
            {"name": n, "shape": [7, 1], "datatype": "FP64", "data": x[:, j].tolist()}
            for j, n in enumerate(names)
        ],
    }
    for body in (matrix, per_feature):
        r = httpx.post(f"{iris.url}/v2/models/iris/infer", json=body)
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["label"]["datatype"] == "INT64" and out["label"]["shape"] == [7]
        assert out["label"]["data"] == labels.tolist()
        assert out["probabilities"]["shape"] == [7, 3]
        np.testing.assert_allclose(
            np.reshape(out["probabilities"]["data"], (7, 3)), probs, atol=TOL
        )
    assert httpx.post(f"{iris.url}/v2/models/iris/infer", json=per_feature).json()["id"] == "req-1"


def test_v2_version_path_and_requested_outputs(iris: Server) -> None:
    x = iris_rows(iris, 2)
    body = {
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": x.tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    r = httpx.post(f"{iris.url}/v2/models/iris/versions/v1/infer", json=body)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["probabilities"]
    assert r.json()["model_version"] == "v1"


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_default_settings(iris: Server, binary: bool) -> None:
    x = iris_rows(iris, 9)
    labels, probs = expected(iris, x)
    client = triton.InferenceServerClient(iris.host_port)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris")
        meta = client.get_model_metadata("iris")
        assert meta["inputs"][0]["shape"] == [-1, 4]
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("iris", [inp])
        np.testing.assert_array_equal(result.as_numpy("label"), labels)
        np.testing.assert_allclose(result.as_numpy("probabilities"), probs, atol=TOL)
        # binary inputs with JSON outputs explicitly requested
        wanted = [triton.InferRequestedOutput("label", binary_data=False)]
        result = client.infer("iris", [inp], outputs=wanted, model_version="v1")
        np.testing.assert_array_equal(result.as_numpy("label"), labels)
        assert result.as_numpy("probabilities") is None
    finally:
        client.close()


def test_columns_layout_with_categorical_feature(churn: Server) -> None:
    frame = churn.artifact.frame.iloc[:12]
    model = churn.artifact.estimator
    labels, probs = model.predict(frame), model.predict_proba(frame)
    instances = frame.to_dict(orient="records")
    r = httpx.post(f"{churn.url}/v1/models/churn:predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == labels.tolist()
    np.testing.assert_allclose(r.json()["probabilities"], probs, atol=TOL)

    client = triton.InferenceServerClient(churn.host_port)
    try:
        inputs = []
        for name in frame.columns:
            column = frame[name].to_numpy()
            if name == "channel":
                data = column.astype(object).reshape(-1, 1)
                tensor = triton.InferInput(name, [len(frame), 1], "BYTES")
            else:
                data = column.astype(np.float32).reshape(-1, 1)
                tensor = triton.InferInput(name, [len(frame), 1], "FP32")
            tensor.set_data_from_numpy(data)
            inputs.append(tensor)
        result = client.infer("churn", inputs)
        got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
        assert got == labels.tolist()
        np.testing.assert_allclose(result.as_numpy("probabilities"), probs, atol=TOL)
    finally:
        client.close()


def test_regression_with_batching_under_concurrency(diabetes: Server) -> None:
    x = diabetes.artifact.frame.to_numpy(dtype=np.float32)[:64]
    want = diabetes.artifact.estimator.predict(x)
    url = f"{diabetes.url}/v1/models/diabetes:predict"

    def one(i: int) -> float:
        r = httpx.post(url, json={"instances": [x[i].tolist()]})
        assert r.status_code == 200, r.text
        return float(r.json()["predictions"][0])

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, range(len(x))))
    # float32 inference of values in the hundreds: compare relative to the scale
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    r = httpx.post(url, json={"instances": x[:5].tolist()})
    assert "probabilities" not in r.json()
    metrics = httpx.get(f"{diabetes.url}/metrics").text
    assert 'pilotage_server_batch_size_count{model="diabetes",version="v1"}' in metrics


def test_answers_carry_a_content_length_not_chunked_framing(iris: Server) -> None:
    x = iris_rows(iris, 1)
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x[0].tolist()}
    for r in (
        httpx.post(f"{iris.url}/v2/models/iris/infer", json={"inputs": [tensor]}),
        httpx.post(f"{iris.url}/v2/models/iris/infer", content=b"{"),  # an error answer too
        httpx.get(f"{iris.url}/metrics"),
    ):
        assert r.headers.get("content-length") == str(len(r.content)), r.headers
        assert "transfer-encoding" not in r.headers
