"""Start-up checks, remote artifacts, fault injection and graceful shutdown."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.server.artifacts import Artifact
from tests.server.conftest import Server, StartServer, serve
from tests.support.procs import pilotage, wait_until

pytestmark = pytest.mark.xdist_group("server-lifecycle")
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pilotage("serve", *args), capture_output=True, text=True, timeout=60, check=False
    )


def test_refuses_a_model_whose_checksum_does_not_match(
    models: dict[str, Artifact], tmp_path: Path
) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(models["iris"].directory, copy)
    with (copy / "model.onnx").open("ab") as f:
        f.write(b"\0")
    done = run_serve("--model-uri", copy.as_uri(), "--port", "0")
    assert done.returncode == 1
    assert "sha256 of model.onnx is" in done.stderr and "refusing to serve" in done.stderr
    assert "Traceback" not in done.stderr


def test_clear_errors_for_missing_model_and_bad_card(tmp_path: Path) -> None:
    done = run_serve("--model-uri", (tmp_path / "nope").as_uri())
    assert done.returncode == 1 and "is not a directory" in done.stderr
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text('{"name": "x"}')
    done = run_serve("--model-uri", (tmp_path / "m").as_uri())
    assert done.returncode == 1 and "not a valid model card" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "m" / "model.json").write_text('{"x":')
    done = run_serve("--model-uri", (tmp_path / "m").as_uri())
    error = done.stderr.strip().splitlines()[-1]
    assert error == (
        f"pilotage serve: error: {tmp_path / 'm' / 'model.json'} is not valid JSON: "
        "EOF while parsing a value at line 1 column 5"
    )


def test_a_bare_path_is_answered_with_its_file_uri(tmp_path: Path) -> None:
    done = run_serve("--model-uri", str(tmp_path / "nope"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"did you mean {(tmp_path / 'nope').as_uri()}?" in done.stderr


def test_a_port_in_use_is_one_clear_line(models: dict[str, Artifact]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_serve("--model-uri", models["iris"].directory.as_uri(), "--port", str(port))
    assert done.returncode == 1
    assert done.stderr == (
        f"pilotage serve: error: cannot listen on 127.0.0.1:{port} (Address already in use)\n"
    )


def test_loads_from_an_http_artifact_uri(models: dict[str, Artifact], tmp_path: Path) -> None:
    iris = models["iris"]
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(iris.directory.parent)
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{httpd.server_address[1]}/{iris.directory.name}"
        cache = tmp_path / "cache"
        with serve(iris, tmp_path, "--cache-dir", str(cache), uri=uri) as server:
            r = httpx.post(server.url + "/v1/models/iris:predict", json=ROW)
            assert r.status_code == 200 and r.json()["predictions"] == [0]
        assert len(list(cache.glob("*/model.onnx"))) == 1  # downloaded, not read in place
    finally:
        httpd.shutdown()


def test_fault_injection_from_the_command_line_is_deterministic(start_server: StartServer) -> None:
    outcomes = []
    for _ in range(2):
        with start_server(
            "iris", "--enable-fault-injection", "--inject-error-rate", "0.5", "--fault-seed", "7"
        ) as server:
            codes = [
                httpx.post(server.url + "/v1/models/iris:predict", json=ROW).status_code
                for _ in range(20)
            ]
            outcomes.append(codes)
            assert set(codes) == {200, 500}
            metrics = httpx.get(server.url + "/metrics").text
            assert 'code="500"} ' + str(codes.count(500)) in metrics
    assert outcomes[0] == outcomes[1]


def test_fault_injection_is_off_unless_enabled(start_server: StartServer) -> None:
    with start_server("iris") as server:
        admin = server.url + "/admin/faults"
        for r in (httpx.get(admin), httpx.post(admin, json={"errorRate": 1})):
            assert r.status_code == 404
            assert "--enable-fault-injection" in r.json()["error"]
        assert "/admin/faults" not in httpx.get(server.url + "/openapi.json").json()["paths"]
        assert httpx.post(server.url + "/v1/models/iris:predict", json=ROW).status_code == 200
        assert "fault injection is ON" not in server.process.log()


def test_fault_options_without_the_flag_are_refused() -> None:
    for option, value in [
        ("--inject-latency-ms", "200"),
        ("--inject-serial-latency-ms", "200"),
        ("--inject-error-rate", "0.5"),
    ]:
        done = run_serve("--model-uri", "file:///nowhere", option, value)
        assert done.returncode == 2
        assert f"{option} needs --enable-fault-injection" in done.stderr
        assert "loading" not in done.stderr and "Traceback" not in done.stderr


def test_faults_change_at_run_time(start_server: StartServer) -> None:
    with start_server("iris", "--enable-fault-injection") as server:
        assert "warning: fault injection is ON" in server.process.log()
        assert "/admin/faults" in httpx.get(server.url + "/openapi.json").json()["paths"]
        admin = server.url + "/admin/faults"
        assert httpx.get(admin).json() == {
            "latencyMs": 0.0,
            "serialLatencyMs": 0.0,
            "errorRate": 0.0,
        }
        r = httpx.post(admin, json={"errorRate": 1})
        assert r.status_code == 200 and r.json()["errorRate"] == 1.0
        r = httpx.post(server.url + "/v2/models/iris/infer", json={"inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
        ]})  # fmt: skip
        assert r.status_code == 500 and "injected fault" in r.json()["error"]
        assert httpx.post(admin, json={"errorRate": 2}).status_code == 400
        assert httpx.post(admin, json={"latency": 5}).status_code == 400
        httpx.post(admin, json={"errorRate": 0, "latencyMs": 300})
        started = time.monotonic()
        assert httpx.post(server.url + "/v1/models/iris:predict", json=ROW).status_code == 200
        assert time.monotonic() - started >= 0.3  # the injected delay is a lower bound
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200  # only inference slows


def test_serial_latency_makes_concurrent_requests_queue(start_server: StartServer) -> None:
    """serialLatencyMs gives a replica a capacity of its own: three requests sent at once
    are answered one slot after the other (latencyMs would let them overlap)."""
    with start_server("iris", "--enable-fault-injection") as server:
        admin = server.url + "/admin/faults"
        assert httpx.post(admin, json={"serialLatencyMs": -1}).status_code == 400
        r = httpx.post(admin, json={"serialLatencyMs": 300})
        assert r.json() == {"latencyMs": 0.0, "serialLatencyMs": 300.0, "errorRate": 0.0}
        url = server.url + "/v1/models/iris:predict"
        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(httpx.post, url, json=ROW, timeout=30) for _ in range(3)]
            done = []
            for f in futures:
                assert f.result().status_code == 200
                done.append(time.monotonic() - started)
        assert max(done) >= 0.9  # three slots of 0.3 s one after the other: a lower bound
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200


def in_flight(server: Server) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("pilotage_server_requests_in_flight{"):
            return float(line.rsplit(" ", 1)[1])
    return -1


def test_graceful_shutdown_finishes_in_flight_requests(start_server: StartServer) -> None:
    with start_server("iris", "--enable-fault-injection", "--inject-latency-ms", "1500") as server:
        url = server.url + "/v1/models/iris:predict"
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(httpx.post, url, json=ROW, timeout=30) for _ in range(4)]
            wait_until(lambda: in_flight(server) == 4, timeout=20, what="4 requests in flight")
            server.process.popen.terminate()
            responses = [f.result() for f in futures]
        assert [r.status_code for r in responses] == [200] * 4
        assert server.process.popen.wait(30) == 0
