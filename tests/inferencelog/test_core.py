"""The logging core on its own: records, the bounded writer, the sinks, the reader.

Real files, a real HTTP collector (a threaded http.server), a real S3 test server
process (moto_server); no router involved.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from pilotage.inferencelog.config import LoggingConfigError, parse_logging
from pilotage.inferencelog.reader import LogReader, LogReadError
from pilotage.inferencelog.record import Exchange, Label, request_record
from pilotage.inferencelog.sinks import S3Sink
from pilotage.inferencelog.writer import InferenceLogger
from tests.support.procs import free_port, wait_until
from tests.support.s3 import s3_client

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
V1_ANSWER = b'{"predictions":[0,2],"probabilities":[[0.9,0.1,0.0],[0.0,0.2,0.8]]}'


def names(upstream: str, model: str, version: str) -> list[str] | None:
    return NAMES if model == "iris" else None


def exchange(i: int = 0, t: float | None = None, **change: Any) -> Exchange:
    base = {
        "time": time.time() if t is None else t,
        "request_id": f"req-{i}".encode(),
        "variant": "stable",
        "version": "1",
        "upstream": "http://127.0.0.1:1",
        "path": "/v1/models/iris:predict",
        "body": orjson.dumps(
            {
                "instances": [
                    [5.1, 3.5, 1.4, 0.2],
                    {**dict(zip(NAMES, [6.0, 3.0, 5.0, 2.0], strict=True))},
                ]
            }
        ),
        "status": 200,
        "answer": V1_ANSWER,
        "latency": 0.0042,
        "error": None,
        "shadow": False,
    }
    base.update(change)
    return Exchange(**base)


def config(uri: str, **extra: Any) -> Any:
    return parse_logging({"sampleRate": 1.0, "sink": {"uri": uri}, **extra})


def read_all(uri: str, hours_back: float = 2, client: Any = None) -> tuple[list[Any], LogReader]:
    end = datetime.now(UTC) + timedelta(hours=1)
    reader = LogReader(
        uri, "default", "iris", end - timedelta(hours=hours_back + 1), end, client=client
    )
    return list(reader), reader


# ---- records ----------------------------------------------------------------------


def test_v1_record_names_positional_rows_and_keeps_predictions() -> None:
    r = request_record(exchange(7), "prod", "iris", names, frozenset())
    assert r["kind"] == "request" and r["id"] == "req-7" and r["namespace"] == "prod"
    assert r["features"] == [
        dict(zip(NAMES, [5.1, 3.5, 1.4, 0.2], strict=True)),
        dict(zip(NAMES, [6.0, 3.0, 5.0, 2.0], strict=True)),
    ]
    assert r["predictions"] == [0, 2]
    assert r["probabilities"] == [[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]]
    assert (r["status"], r["error"], r["latencyMs"]) == (200, None, 4.2)
    assert (r["protocol"], r["model"], r["variant"], r["version"]) == ("v1", "iris", "stable", "1")


def test_v2_matrix_and_per_feature_tensors_become_named_rows() -> None:
    matrix = orjson.dumps(
        {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                     "data": [5.1, 3.5, 1.4, 0.2, 6.0, 3.0, 5.0, 2.0]}]}
    )  # fmt: skip
    answer = orjson.dumps(
        {"outputs": [{"name": "label", "shape": [2], "data": [0, 2]},
                     {"name": "probabilities", "shape": [2, 3], "data": [0.9, 0.1, 0, 0, 0.2, 0.8]}]}
    )  # fmt: skip
    r = request_record(
        exchange(path="/v2/models/iris/infer", body=matrix, answer=answer),
        "default", "iris", names, frozenset({"petal_width"}),
    )  # fmt: skip
    assert r["features"] == [
        dict(zip(NAMES[:3], [5.1, 3.5, 1.4], strict=True)),
        dict(zip(NAMES[:3], [6.0, 3.0, 5.0], strict=True)),
    ]
    assert r["predictions"] == [0, 2] and r["probabilities"] == [[0.9, 0.1, 0], [0, 0.2, 0.8]]
    columns = orjson.dumps(
        {"inputs": [{"name": "amount", "shape": [2, 1], "datatype": "FP32", "data": [[1.5], [2.5]]},
                    {"name": "channel", "shape": [2], "datatype": "BYTES", "data": ["web", "store"]}]}
    )  # fmt: skip
    r = request_record(
        exchange(path="/v2/models/churn/versions/3/infer", body=columns, answer=answer),
        "default", "churn", names, frozenset(),
    )  # fmt: skip
    assert r["features"] == [{"amount": 1.5, "channel": "web"}, {"amount": 2.5, "channel": "store"}]


def test_rows_that_cannot_be_named_are_not_guessed() -> None:
    r = request_record(exchange(path="/v1/models/other:predict"), "d", "x", names, frozenset())
    assert r["features"] is None and "feature names unknown" in r["featuresNote"]
    binary = exchange(path="/v2/models/iris/infer", body=b'{"inputs":[]}\x00\x01\x02')
    r = request_record(binary, "d", "x", names, frozenset())
    assert r["features"] is None and "binary" in r["featuresNote"]


def test_failed_request_keeps_the_error_with_redacted_names_scrubbed() -> None:
    answer = b'{"error":"feature \'ssn\' is not a number"}'
    r = request_record(exchange(status=400, answer=answer), "d", "iris", names, frozenset({"ssn"}))
    assert r["status"] == 400 and r["predictions"] is None
    assert r["error"] == "feature '[redacted]' is not a number"
    r = request_record(
        exchange(status=502, answer=None, error="cannot connect"), "d", "iris", names, frozenset()
    )
    assert (r["status"], r["error"]) == (502, "cannot connect")


def test_bad_logging_documents_are_refused_naming_the_field() -> None:
    cases = {
        "sampleRate": ({"sampleRate": 1.5, "sink": {"uri": "file:///x"}}, "within 0-1"),
        "sink.uri": ({"sampleRate": 0.5}, "required when sampleRate > 0"),
        "scheme": ({"sampleRate": 0.5, "sink": {"uri": "ftp://x/y"}}, "unsupported scheme 'ftp'"),
        "relative": ({"sampleRate": 0.5, "sink": {"uri": "file://logs"}}, "absolute path"),
        "redact": ({"redact": "ssn"}, "logging.redact"),
        "unknown": ({"samplerate": 1}, "unknown field(s) samplerate"),
    }
    for doc, message in cases.values():
        with pytest.raises(LoggingConfigError, match=re.escape(message)):
            parse_logging(doc)
    assert not parse_logging(None).enabled


# ---- writer and file sink ---------------------------------------------------------


def test_file_sink_writes_every_record_and_label_and_reads_back(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    logger = InferenceLogger(config(uri, flushSeconds=0.05), "iris", names)
    logger.start()
    for i in range(250):
        assert logger.offer(exchange(i), 100)
    logger.offer(Label(time.time(), "req-3", "label", 2))
    logger.offer(Label(time.time(), "nobody", "value", 1.5))
    assert logger.close()
    records, reader = read_all(uri)
    requests = [r for r in records if r["kind"] == "request"]
    labels = [r for r in records if r["kind"] == "label"]
    assert sorted(r["id"] for r in requests) == sorted(f"req-{i}" for i in range(250))
    assert [(lab["id"], lab.get("label"), lab.get("value")) for lab in labels] == [
        ("req-3", 2, None), ("nobody", None, 1.5)
    ]  # fmt: skip
    assert logger.stats()["written"] == 250 and logger.stats()["labelsWritten"] == 2
    assert (reader.stats.records, reader.stats.labels, reader.stats.torn) == (250, 2, 0)


def test_files_roll_by_size_and_land_in_their_records_hour(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    logger = InferenceLogger(config(uri, rollBytes=4096, flushSeconds=0.02), "iris", names)
    logger.start()
    now = time.time()
    for i in range(60):
        logger.offer(exchange(i, t=now - 3600))  # an hour ago
        logger.offer(exchange(100 + i, t=now))
    assert logger.close()
    files = sorted(tmp_path.rglob("*.jsonl"))
    hours = {f.parent.name for f in files}
    assert len(hours) == 2, files
    assert len(files) > 4  # rolled by size
    for f in files:
        assert f.parent.parent.name.startswith("date=") and f.parent.name.startswith("hour=")
        for line in f.read_bytes().splitlines():
            rec = json.loads(line)
            assert f"hour={rec['time'][11:13]}" == f.parent.name
    records, _ = read_all(uri)
    assert len(records) == 120


class BlockingSink:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, records: list[dict[str, Any]], now: float) -> None:
        self.entered.set()
        self.release.wait(30)

    def tick(self, now: float) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_hanging_sink_never_blocks_offer_and_drops_are_counted() -> None:
    sink = BlockingSink()
    cfg = parse_logging(
        {"sampleRate": 1.0, "sink": {"uri": "file:///unused"}, "bufferRecords": 50,
         "flushSeconds": 0.01}
    )  # fmt: skip
    logger = InferenceLogger(cfg, "iris", names, sink=sink)
    logger.start()
    logger.offer(exchange(0))
    sink.entered.wait(10)
    started = time.perf_counter()
    accepted = sum(logger.offer(exchange(i)) for i in range(1000))
    assert time.perf_counter() - started < 1.0  # 1000 offers against a hung sink
    assert accepted == 50
    assert logger.stats()["droppedBufferFull"] == 950 and logger.dropped == 950
    sink.release.set()
    assert logger.close()


def test_buffer_bytes_bound_holds_too() -> None:
    cfg = parse_logging(
        {"sampleRate": 1.0, "sink": {"uri": "file:///unused"}, "bufferBytes": 10_000}
    )
    logger = InferenceLogger(cfg, "iris", names, sink=BlockingSink())
    accepted = sum(logger.offer(exchange(i), 1000) for i in range(20))
    assert accepted == 10 and logger.dropped == 10


# ---- HTTP collector (CloudEvents) -------------------------------------------------


class Collector:
    def __init__(self, status: int = 200) -> None:
        self.batches: list[tuple[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.batches.append((self.headers["content-type"], json.loads(body)))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def test_http_sink_posts_cloudevents_batches(collector: Collector) -> None:
    logger = InferenceLogger(config(collector.url, flushSeconds=0.02), "iris", names)
    logger.start()
    for i in range(30):
        logger.offer(exchange(i))
    logger.offer(Label(time.time(), "req-1", "label", 0))
    assert logger.close()
    events = [e for ctype, batch in collector.batches for e in batch]
    assert {ctype for ctype, _ in collector.batches} == {"application/cloudevents-batch+json"}
    assert len(events) == 31
    for e in events:
        assert e["specversion"] == "1.0" and e["source"] == "/pilotage/default/iris"
        assert e["subject"] == e["data"]["id"] and e["time"] == e["data"]["time"]
    types = sorted(e["type"] for e in events)
    assert types.count("io.pilotage.inference.request") == 30
    assert types.count("io.pilotage.inference.label") == 1
    assert len({e["id"] for e in events}) == 31


def test_a_refusing_collector_counts_its_records_as_dropped() -> None:
    url = f"http://127.0.0.1:{free_port()}/events"  # nothing listens there
    logger = InferenceLogger(config(url, flushSeconds=0.02), "iris", names)
    logger.start()
    for i in range(20):
        logger.offer(exchange(i))
    wait_until(lambda: logger.dropped == 20, timeout=20, what="20 drops")
    assert logger.close()
    stats = logger.stats()
    assert stats["droppedSinkFailed"] == 20 and stats["sinkErrors"] >= 1
    assert "127.0.0.1" in stats["lastError"]


# ---- S3 ---------------------------------------------------------------------------


def test_s3_sink_writes_objects_the_reader_streams(s3_env: dict[str, str]) -> None:
    client = s3_client(s3_env)
    client.create_bucket(Bucket="logs")
    cfg = config("s3://logs/inference", flushSeconds=0.02, rollBytes=8192)
    logger = InferenceLogger(cfg, "iris", names, sink=S3Sink(cfg, "iris", client))
    logger.start()
    for i in range(80):
        logger.offer(exchange(i))
    assert logger.close()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="logs")["Contents"]]
    assert len(keys) > 1 and all(k.startswith("inference/default/iris/date=") for k in keys)
    records, reader = read_all("s3://logs/inference", client=client)
    assert sorted(r["id"] for r in records) == sorted(f"req-{i}" for i in range(80))
    assert reader.stats.files == len(keys)


# ---- reader -----------------------------------------------------------------------


def test_reader_skips_and_counts_a_torn_last_line_and_invalid_lines(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    logger = InferenceLogger(config(uri), "iris", names)
    logger.start()
    for i in range(5):
        logger.offer(exchange(i))
    assert logger.close()
    (path,) = tmp_path.rglob("*.jsonl")
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + b"not json\n" + b"".join(lines[2:]) + lines[0][:37])
    records, reader = read_all(uri)
    assert len(records) == 5
    assert (reader.stats.torn, reader.stats.invalid) == (1, 1)


def test_reader_window_is_on_record_time_and_missing_partitions_are_fine(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    logger = InferenceLogger(config(uri), "iris", names)
    logger.start()
    now = time.time()
    for h in range(5):
        logger.offer(exchange(h, t=now - h * 3600))
    assert logger.close()
    end = datetime.fromtimestamp(now, UTC) - timedelta(minutes=30)
    start = end - timedelta(hours=2)
    got = [r["id"] for r in LogReader(uri, "default", "iris", start, end)]
    assert sorted(got) == ["req-1", "req-2"]
    assert list(LogReader(uri, "default", "nope", start, end)) == []
    with pytest.raises(LogReadError, match="only file://, pvc:// and s3://"):
        LogReader("https://collector/x", "default", "iris", start, end)


def test_a_pvc_sink_writes_under_the_claims_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTAGE_PVC_ROOT", str(tmp_path))
    logger = InferenceLogger(config("pvc://inference-logs/iris"), "iris", names)
    logger.start()
    for i in range(10):
        logger.offer(exchange(i))
    assert logger.close()
    assert len(list((tmp_path / "inference-logs" / "iris").rglob("*.jsonl"))) == 1
    records, _ = read_all("pvc://inference-logs/iris")
    assert len(records) == 10
    with pytest.raises(LoggingConfigError, match="leads outside"):
        config("pvc://inference-logs/../../etc")
