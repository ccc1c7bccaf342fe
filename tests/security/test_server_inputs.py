"""Issue 16 items 8 and 9 against real `pilotage serve` processes: client strings cannot
fill the drift reservoir, and V2 binary data follows V1's rules (no ±Inf, no empty batch)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.server.artifacts import build_churn, build_iris
from tests.server.conftest import serve

GOOD = {"amount": 10.0, "channel": "web", "vip": 1, "items": 2}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_long_category_strings_do_not_fill_the_reservoir(tmp_path: Path) -> None:
    churn = build_churn(tmp_path / "churn")
    with serve(churn, tmp_path) as server:
        url = server.url + "/v1/models/churn:predict"
        with httpx.Client(timeout=30) as client:
            assert client.post(url, json={"instances": [GOOD]}).status_code == 200
            before = rss_kib(server.process.pid)
            # the attack of the issue, scaled down: 20 rows of 2 MiB category strings
            for i in range(20):
                huge = f"{i:02d}" + "x" * (2 * 1024 * 1024)
                r = client.post(url, json={"instances": [{**GOOD, "channel": huge}]})
                assert r.status_code == 200, r.text
            grown_mib = (rss_kib(server.process.pid) - before) / 1024
            drift = client.get(server.url + "/v1/models/churn/drift")
        assert drift.status_code == 200
        assert len(drift.content) < 64 * 1024, len(drift.content)  # was 40 MiB
        doc = drift.json()
        assert doc["features"]["channel"]["__other__"] == 20  # counted all the same
        kept = [row[1] for row in doc["reservoir"]["rows"]]
        assert kept[0] == "web" and all(len(v) <= 64 for v in kept)
        assert len(set(kept[1:])) == 20  # distinct values stay distinct (prefix + hash)
        # 40 MiB of strings were sent; keeping them would hold them all
        assert grown_mib < 30, grown_mib


def tensor_request(rows: np.ndarray, datatype: str) -> tuple[bytes, dict[str, str]]:
    raw = rows.astype({"FP32": "<f4", "FP64": "<f8"}[datatype]).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return head + raw, {
        "inference-header-content-length": str(len(head)),
        "content-type": "application/octet-stream",
    }


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_v2_binary_infinity_is_refused_like_v1(tmp_path: Path, datatype: str, value: float) -> None:
    iris = build_iris(tmp_path / "iris")
    with serve(iris, tmp_path) as server, httpx.Client(timeout=30) as client:
        v1 = client.post(
            server.url + "/v1/models/iris:predict", content=b'{"instances": [[1e999, 1, 1, 1]]}'
        )
        assert v1.status_code == 400
        rows = np.array([[5.1, 3.5, 1.4, 0.2], [5.0, value, 1.4, 0.2]])
        body, headers = tensor_request(rows, datatype)
        r = client.post(server.url + "/v2/models/iris/infer", content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert "row 1" in r.json()["error"] and "infinite" in r.json()["error"]
        # the same request with finite values is answered
        body, headers = tensor_request(np.nan_to_num(rows, posinf=1.0, neginf=1.0), datatype)
        ok = client.post(server.url + "/v2/models/iris/infer", content=body, headers=headers)
        assert ok.status_code == 200, ok.text


def test_v2_empty_batch_is_refused_like_v1(tmp_path: Path) -> None:
    iris = build_iris(tmp_path / "iris")
    with serve(iris, tmp_path) as server, httpx.Client(timeout=30) as client:
        v1 = client.post(server.url + "/v1/models/iris:predict", json={"instances": []})
        assert v1.status_code == 400
        empty = {"inputs": [{"name": "input", "shape": [0, 4], "datatype": "FP32", "data": []}]}
        r = client.post(server.url + "/v2/models/iris/infer", json=empty)
        assert r.status_code == 400 and "no rows" in r.json()["error"]
        body, headers = tensor_request(np.zeros((0, 4)), "FP32")
        r = client.post(server.url + "/v2/models/iris/infer", content=body, headers=headers)
        assert r.status_code == 400 and "no rows" in r.json()["error"]
