"""Inference logging through a real router process (docs/inference-logging.md).

Real `pilotage serve` processes with real iris models where the records' features and
predictions matter; the stand-in upstream where only counts do. Sinks: real files, the
real S3 test server (moto_server), a real collector process receiving CloudEvents.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_iris

from pilotage.inferencelog.reader import LogReader
from pilotage.router.table import write_table_file
from pilotage.wire.admin import get_stats
from tests.router.conftest import TOKEN, Upstream, table
from tests.router.traffic import Answer, Client
from tests.support.models import build_model
from tests.support.procs import Process, free_port, pilotage, running, wait_until
from tests.support.s3 import moto_server, s3_client

pytestmark = pytest.mark.xdist_group("router-real")

IRIS = load_iris()
ROWS: list[list[float]] = IRIS.data.tolist()
NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


@pytest.fixture(scope="module")
def iris_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    root = tmp_path_factory.mktemp("log-models")
    model = build_model(root / "v1", "iris", "logistic_regression", "v1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = pilotage("serve", "--model-uri", model.as_uri(), "--port", str(port))
    with running(args, root / "serve.log", ready_url=f"{url}/v2/health/ready") as proc:
        yield Upstream(url, "v1", proc)


@pytest.fixture
def s3_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with moto_server(tmp_path) as env:
        yield env


class LoggingRouter:
    def __init__(self, proc: Process, url: str, admin_url: str):
        self.proc = proc
        self.url = url
        self.admin_url = admin_url

    def log_stats(self) -> Any:
        return get_stats(self.admin_url, TOKEN)["inferenceLog"]


@pytest.fixture
def start_logging_router(tmp_path: Path) -> Iterator[Callable[..., LoggingRouter]]:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    with ExitStack() as stack:

        def start(
            upstream: Upstream,
            logging: dict[str, Any],
            env: dict[str, str] | None = None,
            doc: dict[str, Any] | None = None,
        ) -> LoggingRouter:
            port, admin = free_port(), free_port()
            config = tmp_path / f"routes-{port}.json"
            routes = doc or table(stable=(upstream, 100))
            write_table_file(config, {**routes, "logging": logging})
            args = pilotage(
                "route", "--config", str(config), "--port", str(port),
                "--admin-port", str(admin), "--admin-token-file", str(token_file),
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            proc = stack.enter_context(
                running(
                    args, tmp_path / f"router-{port}.log", env=env,
                    ready_url=f"{url}/pilotage/healthz", timeout=30,
                )
            )  # fmt: skip
            return LoggingRouter(proc, url, f"http://127.0.0.1:{admin}")

        yield start


def read_logs(uri: str, deployment: str = "iris", client: Any = None) -> LogReader:
    end = datetime.now(UTC) + timedelta(hours=1)
    return LogReader(uri, "default", deployment, end - timedelta(hours=3), end, client=client)


def file_logging(root: Path, **extra: Any) -> dict[str, Any]:
    return {"sampleRate": 1.0, "sink": {"uri": root.as_uri()}, "flushSeconds": 0.05, **extra}


def send(url: str, n: int, threads: int = 4) -> list[Answer]:
    """``n`` V1 requests, request ``i`` carrying the iris row ``i % 150``; answers in order."""
    results: dict[int, Answer] = {}

    def worker(k: int) -> None:
        client = Client(url)
        for i in range(k, n, threads):
            results[i] = client.predict([ROWS[i % len(ROWS)]])
        client.close()

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return [results[i] for i in range(n)]


def test_every_request_is_logged_joined_with_its_answer(
    iris_server: Upstream, start_logging_router: Callable[..., LoggingRouter], tmp_path: Path
) -> None:
    root = tmp_path / "logs"
    router = start_logging_router(iris_server, file_logging(root))
    answers = send(router.url, 120)
    client = Client(router.url)
    named = client.request(
        "POST", "/v1/models/iris:predict", {"instances": [dict(zip(NAMES, ROWS[50], strict=True))]}
    )
    v2 = client.request(
        "POST", "/v2/models/iris/infer",
        {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                     "data": ROWS[100] + ROWS[0]}]},
    )  # fmt: skip
    bad = client.request("POST", "/v1/models/iris:predict", {"instances": [[1.0, 2.0]]})
    feedback = client.request(
        "POST", "/v1/feedback",
        {"feedback": [{"requestId": answers[0].request_id, "label": 0},
                      {"requestId": "never-answered", "label": 2}]},
    )  # fmt: skip
    client.close()
    assert {a.status for a in answers} == {200} and (named.status, v2.status) == (200, 200)
    assert bad.status == 400 and feedback.status == 200
    assert json.loads(feedback.body)["unknown"] == 1  # counted, not an error

    router.proc.stop()  # SIGTERM: what the log holds is written before the router exits
    reader = read_logs(root.as_uri())
    records = list(reader)
    requests = {r["id"]: r for r in records if r["kind"] == "request"}
    labels = [r for r in records if r["kind"] == "label"]
    answered = [*answers, named, v2, bad]
    assert sorted(requests) == sorted(a.request_id for a in answered)
    assert (reader.stats.torn, reader.stats.invalid, reader.stats.unreadable) == (0, 0, 0)
    for i, a in enumerate(answers):
        r = requests[a.request_id]
        answer = json.loads(a.body)
        assert r["features"] == [dict(zip(NAMES, ROWS[i % len(ROWS)], strict=True))]
        assert r["predictions"] == answer["predictions"]
        assert r["probabilities"] == answer["probabilities"]
        assert (r["namespace"], r["deployment"], r["variant"], r["version"]) == (
            "default", "iris", "stable", "v1"
        )  # fmt: skip
        assert (r["status"], r["error"], r["shadow"], r["protocol"]) == (200, None, False, "v1")
        assert r["latencyMs"] > 0 and r["time"].endswith("Z")
    assert requests[named.request_id]["features"] == [dict(zip(NAMES, ROWS[50], strict=True))]
    r2 = requests[v2.request_id]
    assert r2["protocol"] == "v2" and len(r2["features"]) == 2
    assert r2["features"][0] == pytest.approx(dict(zip(NAMES, ROWS[100], strict=True)), rel=1e-6)
    assert r2["predictions"] == [2, 0] and len(r2["probabilities"]) == 2
    failed = requests[bad.request_id]
    assert failed["status"] == 400 and failed["predictions"] is None
    assert failed["error"] == json.loads(bad.body)["error"]
    assert {(lab["id"], lab["label"]) for lab in labels} == {
        (answers[0].request_id, 0), ("never-answered", 2)
    }  # fmt: skip


def test_a_tenth_of_the_requests_at_sample_rate_0_1(
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    tmp_path: Path,
) -> None:
    root = tmp_path / "logs"
    router = start_logging_router(start_upstream("1"), file_logging(root, sampleRate=0.1))
    n = 3000
    answers = send(router.url, n)
    assert {a.status for a in answers} == {200}
    router.proc.stop()
    logged = [r for r in read_logs(root.as_uri()) if r["kind"] == "request"]
    # binomial(3000, 0.1): mean 300, sd 16.4; five sd either side
    sd = math.sqrt(n * 0.1 * 0.9)
    assert n * 0.1 - 5 * sd < len(logged) < n * 0.1 + 5 * sd, len(logged)
    assert {r["id"] for r in logged} <= {a.request_id for a in answers}


def test_redacted_features_appear_in_no_file(
    iris_server: Upstream, start_logging_router: Callable[..., LoggingRouter], tmp_path: Path
) -> None:
    root = tmp_path / "logs"
    redact = ["petal_width_cm", "sepal_length_cm"]
    router = start_logging_router(iris_server, file_logging(root, redact=redact))
    answers = send(router.url, 40)
    client = Client(router.url)
    named = dict(zip(NAMES, ROWS[3], strict=True))
    ok = client.request("POST", "/v1/models/iris:predict", {"instances": [named]})
    # the server's error names the feature at fault: the log must not
    bad = client.request(
        "POST", "/v1/models/iris:predict", {"instances": [{**named, "petal_width_cm": "wide"}]}
    )
    client.close()
    assert ok.status == 200 and bad.status == 400 and b"petal_width_cm" in bad.body
    router.proc.stop()
    files = list(root.rglob("*.jsonl"))
    assert files
    for f in files:
        data = f.read_bytes()
        for name in redact:
            assert name.encode() not in data, f
    records = {r["id"]: r for r in read_logs(root.as_uri())}
    assert len(records) == len(answers) + 2
    assert records[ok.request_id]["features"] == [
        {"sepal_width_cm": ROWS[3][1], "petal_length_cm": ROWS[3][2]}
    ]
    assert "[redacted]" in records[bad.request_id]["error"]


def test_s3_sink_on_the_real_s3_test_server(
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    s3_env: dict[str, str],
) -> None:
    s3 = s3_client(s3_env)
    s3.create_bucket(Bucket="inference")
    logging = {"sampleRate": 1.0, "sink": {"uri": "s3://inference/logs"}, "flushSeconds": 0.05,
               "rollSeconds": 0.5}  # fmt: skip
    router = start_logging_router(start_upstream("1"), logging, env=s3_env)
    first = send(router.url, 50)
    # rolled by time while the router runs: the objects appear without a shutdown
    wait_until(lambda: _s3_count(s3) == 50, timeout=30, what="50 records in S3")
    second = send(router.url, 30)
    router.proc.stop()
    reader = read_logs("s3://inference/logs", client=s3)
    ids = sorted(r["id"] for r in reader)
    assert ids == sorted(a.request_id for a in first + second)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="inference")["Contents"]]
    assert len(keys) >= 2 and all(k.startswith("logs/default/iris/date=") for k in keys)


def _s3_count(s3: Any) -> int:
    return sum(1 for r in read_logs("s3://inference/logs", client=s3) if r["kind"] == "request")


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Callable[[str], tuple[str, Path]]]:
    with ExitStack() as stack:

        def start(mode: str) -> tuple[str, Path]:
            port = free_port()
            out = tmp_path / f"events-{port}.jsonl"
            args = [sys.executable, "-m", "tests.inferencelog.collector", "--port", str(port),
                    "--out", str(out), "--mode", mode]  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(running(args, tmp_path / f"collector-{port}.log", ready_url=url))
            return f"{url}/events", out

        yield start


def test_http_sink_sends_cloudevents_to_a_collector(
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    start_collector: Callable[[str], tuple[str, Path]],
) -> None:
    url, out = start_collector("ok")
    logging = {"sampleRate": 1.0, "sink": {"uri": url}, "flushSeconds": 0.05}
    router = start_logging_router(start_upstream("1"), logging)
    answers = send(router.url, 60)
    wait_until(
        lambda: out.exists() and len(out.read_text().splitlines()) == 60, timeout=30,
        what="60 events at the collector",
    )  # fmt: skip
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["contentType"] for e in events} == {"application/cloudevents-batch+json"}
    assert sorted(e["event"]["subject"] for e in events) == sorted(a.request_id for a in answers)
    for e in (x["event"] for x in events):
        assert e["specversion"] == "1.0" and e["type"] == "io.pilotage.inference.request"
        assert e["source"] == "/pilotage/default/iris" and e["data"]["id"] == e["subject"]
    assert router.log_stats()["written"] == 60


@pytest.mark.parametrize("mode", ["hang", "refuse", "nothing-listens"])
def test_a_hanging_or_refusing_sink_fails_no_request(
    mode: str,
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    start_collector: Callable[[str], tuple[str, Path]],
) -> None:
    if mode == "nothing-listens":
        url = f"http://127.0.0.1:{free_port()}/events"
    else:
        url, _ = start_collector(mode)
    logging = {"sampleRate": 1.0, "sink": {"uri": url, "timeoutSeconds": 60},
               "flushSeconds": 0.02, "bufferRecords": 50}  # fmt: skip
    router = start_logging_router(start_upstream("1"), logging)
    answers = send(router.url, 600)
    assert [a.status for a in answers] == [200] * 600
    if mode == "hang":
        # the writer is stuck in its first POST with at most one buffer's worth (50);
        # the buffer holds 50 more; everything past them is dropped at once
        stats = router.log_stats()
        assert stats["droppedBufferFull"] >= 600 - 100, stats
    else:
        # each refused batch is lost and counted
        wait_until(lambda: router.log_stats()["dropped"] == 600, timeout=30, what="600 drops")
        stats = router.log_stats()
        assert stats["droppedSinkFailed"] > 0 and stats["sinkErrors"] > 0, stats
    assert stats["written"] == 0 and stats["offered"] == 600
    metrics = Client(router.url).request("GET", "/metrics").body.decode()
    assert 'pilotage_router_inference_log_dropped_total{deployment="iris",reason=' in metrics


def test_a_router_killed_mid_write_leaves_readable_files(
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    tmp_path: Path,
) -> None:
    root = tmp_path / "logs"
    router = start_logging_router(start_upstream("1"), file_logging(root, flushSeconds=0.01))
    stop = threading.Event()
    answered: list[str] = []

    def traffic() -> None:
        client = Client(router.url, timeout=5)
        while not stop.is_set():
            try:
                answer = client.predict([[1.0, 2.0, 3.0, 4.0]])
            except OSError:
                break
            answered.append(answer.request_id)
        client.close()

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for w in workers:
        w.start()
    wait_until(lambda: len(list(root.rglob("*.jsonl"))) > 0 and len(answered) > 300, timeout=30)
    os.kill(router.proc.pid, signal.SIGKILL)
    stop.set()
    for w in workers:
        w.join()
    reader = read_logs(root.as_uri())
    ids = [r["id"] for r in reader]
    assert len(ids) > 0 and set(ids) <= set(answered)
    # SIGKILL seldom lands inside one write(2); cut the newest file mid-record as it would
    newest = max(root.rglob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    data = newest.read_bytes()
    newest.write_bytes(data + data[: len(data.splitlines()[0]) // 2])
    reader = read_logs(root.as_uri())
    assert [r["id"] for r in reader] == ids
    assert reader.stats.torn == 1 and reader.stats.invalid == 0


@pytest.mark.parametrize("log_shadow", [True, False], ids=["shadow-logged", "shadow-not-logged"])
def test_shadow_answers_are_logged_when_asked(
    log_shadow: bool,
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    tmp_path: Path,
) -> None:
    stable, shadow = start_upstream("1"), start_upstream("2", "--disagree-every", "2")
    doc = {
        **table(mode="shadow", stable=(stable, 100), shadow=(shadow, 0)),
        "shadow": {"variant": "shadow", "percent": 100},
    }
    root = tmp_path / "logs"
    router = start_logging_router(stable, file_logging(root, shadow=log_shadow), doc=doc)
    answers = send(router.url, 40, threads=1)
    if log_shadow:
        wait_until(lambda: router.log_stats()["written"] == 80, 30, what="80 records")
    router.proc.stop()
    records = [r for r in read_logs(root.as_uri()) if r["kind"] == "request"]
    primary = {r["id"]: r for r in records if not r["shadow"]}
    copies = {r["id"]: r for r in records if r["shadow"]}
    assert sorted(primary) == sorted(a.request_id for a in answers)
    assert {(r["variant"], r["version"]) for r in primary.values()} == {("stable", "1")}
    if not log_shadow:
        assert copies == {}
        return
    # the same request id joins the shadow's answer to the primary's
    assert sorted(copies) == sorted(primary)
    assert {(r["variant"], r["version"]) for r in copies.values()} == {("shadow", "2")}
    assert any(copies[i]["predictions"] != primary[i]["predictions"] for i in primary)


def test_a_bad_logging_section_is_refused_naming_the_field(
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    tmp_path: Path,
) -> None:
    upstream = start_upstream("1")
    router = start_logging_router(upstream, file_logging(tmp_path / "logs"))
    bad = {**table(stable=(upstream, 100)), "logging": {"sampleRate": 2, "sink": {"uri": "x"}}}
    client = Client(router.admin_url)
    answer = client.request("PUT", "/admin/routes", bad, {"authorization": f"Bearer {TOKEN}"})
    client.close()
    assert answer.status == 400
    assert json.loads(answer.body)["error"] == "logging.sampleRate: must be within 0-1, got 2"
    assert router.log_stats()["sampleRate"] == 1.0  # the running settings stay


def test_failed_requests_are_logged_with_their_error(
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    tmp_path: Path,
) -> None:
    upstream = start_upstream("1")
    root = tmp_path / "logs"
    router = start_logging_router(upstream, file_logging(root))
    upstream.control(fail=503)
    client = Client(router.url)
    refused = client.predict([[1.0, 2.0, 3.0, 4.0]])
    upstream.proc.stop()  # nothing answers any more: the router's own 502
    unreachable = client.predict([[1.0, 2.0, 3.0, 4.0]])
    client.close()
    assert (refused.status, unreachable.status) == (503, 502)
    router.proc.stop()
    records = {r["id"]: r for r in read_logs(root.as_uri())}
    assert sorted(records) == sorted([refused.request_id, unreachable.request_id])
    r503, r502 = records[refused.request_id], records[unreachable.request_id]
    assert (r503["status"], r503["error"], r503["predictions"]) == (503, "injected failure", None)
    assert r502["status"] == 502 and r502["error"] and r502["variant"] == "stable"
    assert r502["error"] in json.loads(unreachable.body)["error"]


def test_sigterm_writes_what_the_buffer_holds(
    start_upstream: Callable[..., Upstream],
    start_logging_router: Callable[..., LoggingRouter],
    tmp_path: Path,
) -> None:
    root = tmp_path / "logs"
    # a batch would leave only after an hour: whatever is in the files came with shutdown
    router = start_logging_router(start_upstream("1"), file_logging(root, flushSeconds=3600))
    answers = send(router.url, 30)
    stats = router.log_stats()
    assert (stats["written"], stats["queued"]) == (0, 30)
    assert list(root.rglob("*.jsonl")) == []
    router.proc.stop()
    ids = sorted(r["id"] for r in read_logs(root.as_uri()))
    assert ids == sorted(a.request_id for a in answers)
