"""Every bad input gets a 4xx with an error that names the problem; the server lives on."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.conftest import Server, StartServer

pytestmark = pytest.mark.xdist_group("server-errors")

ROW = [5.1, 3.5, 1.4, 0.2]
V1 = "/v1/models/iris:predict"
V2 = "/v2/models/iris/infer"


@pytest.fixture(scope="module")
def iris(start_server: StartServer) -> Iterator[Server]:
    with start_server("iris", "--max-body-bytes", "4096") as server:
        yield server


@pytest.fixture(scope="module")
def churn(start_server: StartServer) -> Iterator[Server]:
    with start_server("churn") as server:
        yield server


def tensor(
    name: str = "input", shape: list[int] | None = None, datatype: str = "FP32", data: Any = None
) -> dict[str, Any]:
    return {
        "name": name,
        "shape": shape or [1, 4],
        "datatype": datatype,
        "data": ROW if data is None else data,
    }


CASES: list[tuple[str, str, Any, int, str]] = [
    # (id, path, json body or raw bytes, status, fragment of the error)
    ("v1 wrong length", V1, {"instances": [[1, 2, 3]]}, 400, "has 3 values, expected 4"),
    ("v1 string value", V1, {"instances": [[1, "x", 3, 4]]}, 400, "'sepal_width' expects a number"),
    ("v1 null not nullable", V1, {"instances": [[1, 2, 3, None]]}, 400, "'petal_width' is null"),
    (
        "v1 unknown feature",
        V1,
        {
            "instances": [
                {
                    **dict(
                        zip(
                            ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                            ROW,
                            strict=True,
                        )
                    ),
                    "colour": 1,
                }
            ]
        },
        400,
        "unknown feature(s) 'colour'",
    ),
    (
        "v1 missing feature",
        V1,
        {"instances": [{"sepal_length": 1, "sepal_width": 2, "petal_length": 3}]},
        400,
        "missing feature 'petal_width'",
    ),
    ("v1 no instances", V1, {"rows": [ROW]}, 400, "missing 'instances'"),
    ("v1 empty instances", V1, {"instances": []}, 400, "non-empty array"),
    ("v1 scalar instance", V1, {"instances": [3]}, 400, "instance 0 must be an array"),
    ("v1 nested value", V1, {"instances": [[1, [2], 3, 4]]}, 400, "got array"),
    ("v1 float32 overflow", V1, {"instances": [[1e300, 2, 3, 4]]}, 400, "does not fit in float32"),
    ("v1 body not object", V1, [ROW], 400, "must be a JSON object"),
    ("malformed json", V1, b'{"instances": [[1,2', 400, "malformed JSON"),
    ("empty body", V1, b"", 400, "body is empty"),
    (
        "v2 wrong shape",
        V2,
        {"inputs": [tensor(shape=[1, 3], data=[1, 2, 3])]},
        400,
        "must have shape [N, 4]",
    ),
    (
        "v2 data size",
        V2,
        {"inputs": [tensor(shape=[2, 4])]},
        400,
        "holds 4 elements, shape needs 8",
    ),
    ("v2 bad datatype", V2, {"inputs": [tensor(datatype="FP8")]}, 400, "unknown datatype 'FP8'"),
    (
        "v2 strings as FP32",
        V2,
        {"inputs": [tensor(data=["a", "b", "c", "d"])]},
        400,
        "FP32 data must be numbers",
    ),
    (
        "v2 bytes for numeric",
        V2,
        {"inputs": [tensor(datatype="BYTES", data=["a", "b", "c", "d"])]},
        400,
        "send FP32, not BYTES",
    ),
    (
        "v2 unknown feature input",
        V2,
        {"inputs": [tensor("sepal_length", [1, 1], data=[1]), tensor("colour", [1, 1], data=[1])]},
        400,
        "unknown input(s) 'colour'",
    ),
    (
        "v2 missing feature input",
        V2,
        {"inputs": [tensor("sepal_length", [1, 1], data=[1])]},
        400,
        "missing feature input(s)",
    ),
    ("v2 no inputs", V2, {"inputs": []}, 400, "'inputs' must be a non-empty array"),
    ("v2 duplicate input", V2, {"inputs": [tensor(), tensor()]}, 400, "appears more than once"),
    (
        "v2 unknown output",
        V2,
        {"inputs": [tensor()], "outputs": [{"name": "logits"}]},
        400,
        "unknown output 'logits'",
    ),
    (
        "v2 null in data",
        V2,
        {"inputs": [tensor(data=[1, None, 3, 4])]},
        400,
        "'sepal_width' is null/NaN but not nullable",
    ),
    (
        "unknown model v1",
        "/v1/models/wine:predict",
        {"instances": [ROW]},
        404,
        "unknown model 'wine'",
    ),
    (
        "unknown model v2",
        "/v2/models/wine/infer",
        {"inputs": [tensor()]},
        404,
        "unknown model 'wine'",
    ),
    (
        "unknown version",
        "/v2/models/iris/versions/v9/infer",
        {"inputs": [tensor()]},
        404,
        "unknown version 'v9'",
    ),
    ("unknown endpoint", "/v3/anything", {}, 404, "no such endpoint"),
    ("body too large", V1, {"instances": [ROW] * 400}, 413, "body too large"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_named_4xx(
    iris: Server, path: str, body: Any, status: int, fragment: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(iris.url + path, content=content)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    assert iris.process.alive()


def _binary_request(
    header: dict[str, Any], payload: bytes, declared: str | None
) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    headers = {
        "Inference-Header-Content-Length": declared if declared is not None else str(len(head))
    }
    return head + payload, headers


BINARY_CASES = [
    ("header not int", {"inputs": [tensor()]}, b"", "abc", "is not an integer"),
    ("header too long", {"inputs": [tensor()]}, b"", "100000", "but the body has"),
    (
        "size mismatch",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        },
        struct.pack("<3f", 1, 2, 3),
        None,
        "needs 16 bytes",
    ),
    (
        "trailing bytes",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        },
        struct.pack("<5f", 1, 2, 3, 4, 5),
        None,
        "declare 16 bytes",
    ),
    (
        "not multiple",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 15},
                }
            ]
        },
        b"x" * 15,
        None,
        "not a multiple of 4",
    ),
    (
        "nan not nullable",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        },
        struct.pack("<4f", 1, float("nan"), 3, 4),
        None,
        "'sepal_width' is null/NaN",
    ),
]


@pytest.mark.parametrize(
    ("header", "payload", "declared", "fragment"),
    [c[1:] for c in BINARY_CASES],
    ids=[c[0] for c in BINARY_CASES],
)
def test_malformed_binary_requests(
    iris: Server, header: dict[str, Any], payload: bytes, declared: str | None, fragment: str
) -> None:
    content, headers = _binary_request(header, payload, declared)
    r = httpx.post(iris.url + V2, content=content, headers=headers)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_wrong_method_is_405(iris: Server) -> None:
    r = httpx.get(iris.url + V2)
    assert r.status_code == 405 and "use POST" in r.json()["error"]
    r = httpx.post(iris.url + "/v2/health/ready", content=b"{}")
    assert r.status_code == 405


def test_chunked_body_over_the_limit_is_413(iris: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(400):
            yield b"[1, 2, 3, 4],"
        yield b"[1, 2, 3, 4]]}"

    r = httpx.post(iris.url + V1, content=chunks())
    assert r.status_code == 413


def test_categorical_feature_type_errors(churn: Server) -> None:
    good = {"amount": 10.0, "channel": "web", "vip": 1, "items": 2}
    url = churn.url + "/v1/models/churn:predict"
    r = httpx.post(url, json={"instances": [{**good, "channel": 3}]})
    assert (
        r.status_code == 400
        and "'channel' is categorical and expects a string" in r.json()["error"]
    )
    r = httpx.post(url, json={"instances": [{**good, "amount": "ten"}]})
    assert r.status_code == 400 and "'amount' expects a number" in r.json()["error"]
    one = {"shape": [1], "datatype": "FP32", "data": [1.0]}
    inputs = [
        {"name": "amount", **one},
        {"name": "channel", **one},
        {"name": "vip", **one},
        {"name": "items", **one},
    ]
    r = httpx.post(churn.url + "/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400 and "feature is categorical; send BYTES" in r.json()["error"]
    matrix = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
    }
    r = httpx.post(churn.url + "/v2/models/churn/infer", json=matrix)
    assert r.status_code == 400 and "one tensor per feature" in r.json()["error"]
    # an unseen category is valid input: it scores and counts as __other__
    r = httpx.post(url, json={"instances": [{**good, "channel": "fax"}]})
    assert r.status_code == 200, r.text
    drift = httpx.get(churn.url + "/v1/models/churn/drift").json()
    assert drift["features"]["channel"]["__other__"] == 1


@pytest.fixture(scope="module")
def diabetes(start_server: StartServer) -> Iterator[Server]:
    with start_server("diabetes") as server:
        yield server


def test_v2_takes_null_for_a_nullable_numeric_feature_as_v1_does(diabetes: Server) -> None:
    row: list[Any] = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, None]
    v1 = httpx.post(diabetes.url + "/v1/models/diabetes:predict", json={"instances": [row]})
    assert v1.status_code == 200, v1.text
    body = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": row}]}
    v2 = httpx.post(diabetes.url + "/v2/models/diabetes/infer", json=body)
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == v1.json()["predictions"]
    # The binary form of the same missing value: NaN.
    raw = struct.pack("<10f", *[float("nan") if v is None else v for v in row])
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 10],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    binary = httpx.post(
        diabetes.url + "/v2/models/diabetes/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert binary.status_code == 200, binary.text
    assert binary.json()["outputs"][0]["data"] == v1.json()["predictions"]
    # A string is still no number, and says how to send a missing value.
    body["inputs"][0]["data"] = [*row[:9], "NaN"]
    r = httpx.post(diabetes.url + "/v2/models/diabetes/infer", json=body)
    assert r.status_code == 400 and "null for a missing value" in r.json()["error"]


def test_v2_null_in_a_feature_that_is_not_nullable_is_refused(iris: Server) -> None:
    r = httpx.post(iris.url + V2, json={"inputs": [tensor(data=[5.1, None, 1.4, 0.2])]})
    assert r.status_code == 400
    assert "'sepal_width' is null/NaN but not nullable" in r.json()["error"]


def test_an_empty_category_is_refused_where_null_is(churn: Server) -> None:
    # The graph reads a null category as "": an empty string would score exactly as a
    # null does, so it is refused wherever null is.
    good = {"amount": 10.0, "channel": "web", "vip": 1, "items": 2}
    url = churn.url + "/v1/models/churn:predict"
    r = httpx.post(url, json={"instances": [{**good, "channel": ""}]})
    assert r.status_code == 400
    assert "'channel' is an empty string, which the model reads as null" in r.json()["error"]
    one = {"shape": [1], "datatype": "FP32", "data": [1.0]}
    inputs = [
        {"name": "amount", **one},
        {"name": "channel", "shape": [1], "datatype": "BYTES", "data": [""]},
        {"name": "vip", **one},
        {"name": "items", **one},
    ]
    r = httpx.post(churn.url + "/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400
    assert "'channel' is an empty string, which the model reads as null" in r.json()["error"]
    inputs[1]["data"] = [None]
    r = httpx.post(churn.url + "/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400 and "'channel' is null but not nullable" in r.json()["error"]
    inputs[1]["data"] = ["web"]
    r = httpx.post(churn.url + "/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
