"""`--inference-thread`: onnxruntime runs on a worker thread, so the event loop keeps
answering (health checks, metrics) while a slow call is in progress."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from tests.server.artifacts import Artifact, build_breast_cancer_forest
from tests.server.conftest import serve
from tests.support.procs import wait_until

pytestmark = pytest.mark.xdist_group("server-inference-thread")

TILES = 70  # 569 rows x 70 through 800 trees: a call of about a second


def inference_running(url: str) -> int:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("pilotage_server_inference_running{"):
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError("no pilotage_server_inference_running in /metrics")


def binary_request(url: str, x: np.ndarray) -> httpx.Response:
    header = orjson.dumps({"inputs": [{
        "name": "input", "shape": list(x.shape), "datatype": "FP32",
        "parameters": {"binary_data_size": x.nbytes},
    }]})  # fmt: skip
    return httpx.post(
        url + "/v2/models/breast_cancer/infer",
        content=header + x.astype("<f4").tobytes(),
        headers={"inference-header-content-length": str(len(header))},
        timeout=120,
    )


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return build_breast_cancer_forest(tmp_path_factory.mktemp("forest") / "bc", trees=800)


@pytest.mark.parametrize("batching", [[], ["--max-batch-size", "8"]], ids=["alone", "batched"])
def test_the_loop_answers_while_a_slow_call_runs(
    forest: Artifact, tmp_path: Path, batching: list[str]
) -> None:
    x = np.tile(forest.frame.to_numpy(dtype=np.float32), (TILES, 1))
    args = ["--inference-thread", "--max-body-bytes", str(64 << 20), "--max-rows", "50000"]
    args += batching
    with serve(forest, tmp_path, *args) as server, ThreadPoolExecutor(2) as pool:
        assert inference_running(server.url) == 0
        slow = pool.submit(binary_request, server.url, x)
        # this /metrics answer is sent while onnxruntime is busy with the slow call
        wait_until(
            lambda: slow.done() or inference_running(server.url) == 1,
            timeout=60,
            interval=0.01,
            what="the slow call in progress",
        )
        assert not slow.done(), "the slow call ended before the loop could answer"
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
        small = pool.submit(binary_request, server.url, x[:3])  # queued behind the slow one
        response = slow.result()
        assert response.status_code == 200
        assert small.result().status_code == 200
        assert inference_running(server.url) == 0
        header = response.json()  # outputs come back as JSON: none asked for binary
        label = next(o for o in header["outputs"] if o["name"] == "label")
        assert label["shape"] == [len(x)]
        # drift counts are kept on the loop thread: every row of both calls is counted
        drift = httpx.get(server.url + "/v1/models/breast_cancer/drift").json()
        assert drift["rows"] == len(x) + 3
        assert sum(drift["predictions"]["counts"].values()) == len(x) + 3


def test_threaded_batches_give_each_request_its_own_rows(forest: Artifact, tmp_path: Path) -> None:
    x = forest.frame.to_numpy(dtype=np.float32)[:48]
    want = forest.estimator.predict(x).tolist()
    args = ["--inference-thread", "--max-batch-size", "16"]
    with serve(forest, tmp_path, *args) as server, ThreadPoolExecutor(12) as pool:
        url = server.url + "/v1/models/breast_cancer:predict"

        def one(i: int) -> list[int]:
            r = httpx.post(url, json={"instances": x[i : i + 2].tolist()}, timeout=60)
            assert r.status_code == 200, r.text
            return list(r.json()["predictions"])

        got = list(pool.map(one, range(0, len(x), 2)))
        assert [label for pair in got for label in pair] == want
        metrics = httpx.get(server.url + "/metrics").text
        assert 'pilotage_server_batch_size_count{model="breast_cancer",version="v1"}' in metrics
