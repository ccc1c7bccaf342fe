"""Profiling reads a file in chunks (issue 16, item 12): memory stays flat with the file's
size, a FIFO or a device is refused at once, and a remote read is bounded in time. Chunked
results equal the in-memory ones wherever a column has at most SAMPLE_VALUES values."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pilotage import sources
from pilotage.api import parse_resource
from pilotage.api.dataset import Dataset
from pilotage.trainer import streaming
from pilotage.trainer.run import _column_summary, _infer_task, _profile_of, profile
from pilotage.trainer.validate import validate
from tests.trainer.conftest import CHURN_SCHEMA, churn_frame


def _dataset(uri: str, **spec: Any) -> Dataset:
    ds = parse_resource(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "d"},
            "spec": {"source": {"uri": uri, "format": "csv"}, **spec},
        }
    )
    assert isinstance(ds, Dataset)
    return ds


def _messy(rows: int) -> pd.DataFrame:
    frame = churn_frame(rows, seed=5)
    frame.loc[frame.index % 17 == 0, "age"] = None  # missing values
    frame.loc[frame.index % 29 == 0, "churned"] = None  # unlabelled rows are not profiled
    frame.loc[3, "age"] = 250  # out of range
    frame.loc[7, "country"] = "atlantis"  # not allowed
    frame = pd.concat([frame, frame.iloc[:5]], ignore_index=True)  # duplicates
    frame["constant"] = 1
    return frame


def test_chunked_results_equal_the_in_memory_ones(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _messy(700).to_csv(path, index=False)
    ds = _dataset(path.as_uri(), target="churned", schema=CHURN_SCHEMA)

    loaded = sources.source_for(ds.spec.source.uri).load(ds.spec.source)
    whole = validate(ds, loaded.frame)
    streamed = streaming.profile_file(ds, path, "csv", path.as_uri(), rows_per_chunk=64)

    assert streamed.rows == len(loaded.frame) and streamed.fingerprint == loaded.fingerprint
    assert [f.dump() for f in streamed.findings] == [f.dump() for f in whole.findings]
    kinds = {f.kind for f in streamed.findings}
    assert {"missing", "outOfRange", "notAllowed", "duplicates", "constant"} <= kinds
    assert streamed.features == whole.features and streamed.target == whole.target
    for column in [*whole.features, whole.target]:
        expected = _profile_of(whole.frame[column.name], column, 50)
        assert streamed.profiles[column.name] == expected, column.name
    assert streamed.summary == [
        _column_summary(whole.frame[c.name], c, "target" if c is whole.target else "feature")
        for c in [whole.target, *whole.features]
    ]
    assert streamed.task == _infer_task(whole.target, whole.frame[whole.target.name])


def test_a_sampled_numeric_profile_is_close_and_its_moments_exact() -> None:
    values = np.random.default_rng(1).normal(10.0, 3.0, 40_000)
    exact = streaming.NumericSample(size=10**6)
    sampled = streaming.NumericSample(size=5_000)
    for chunk in np.array_split(values, 13):
        exact.add(chunk)
        sampled.add(chunk)
    full, approx = exact.profile(), sampled.profile()
    assert sampled.values.size == 5_000
    assert approx.mean == pytest.approx(full.mean, rel=1e-9)
    assert approx.std == pytest.approx(full.std, rel=1e-9)
    assert len(approx.edges) == len(full.edges)
    assert np.allclose(approx.edges, full.edges, atol=0.25)  # sampling error of quantiles
    assert np.allclose(approx.proportions, full.proportions, atol=0.02)


_PEAK = """
import json, sys
from pathlib import Path
from pilotage.api import parse_resource
from pilotage.trainer import streaming

# Small chunks, samples and distinct counts, so that a few MB of CSV is already "large".
streaming.CHUNK_ROWS, streaming.SAMPLE_VALUES, streaming.DISTINCT_LIMIT = 4000, 2000, 2000
ds = parse_resource(json.loads(sys.argv[1]))
path = Path(sys.argv[2])

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark: the imports' peak is not the profile's
before = status("VmRSS")
result = streaming.profile_file(ds, path, "csv", path.as_uri())
print(json.dumps({"rows": result.rows, "growth_kib": status("VmHWM") - before}))
"""


def _growth(path: Path) -> dict[str, int]:
    """Rows read, and how far the resident memory rose while profiling them."""
    doc = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d"},
        "spec": {"source": {"uri": path.as_uri()}, "target": "y"},
    }
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, json.dumps(doc), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _wide(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 8)), columns=[f"x{i}" for i in range(8)])
    frame["y"] = rng.integers(0, 3, rows)
    return frame


def test_peak_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    rows = 20_000
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    _wide(rows, 1).to_csv(small, index=False)
    _wide(4 * rows, 2).to_csv(large, index=False)
    extra_kib = (large.stat().st_size - small.stat().st_size) // 1024  # about 9 MB
    first, second = _growth(small), _growth(large)
    assert (first["rows"], second["rows"]) == (rows, 4 * rows)
    # Read whole, memory rose by about ten times the file (5.2 GB for 500 MB of CSV), so
    # the larger file would rise by some 90 MB more; in chunks the rise is the same for
    # both but for the duplicate count's 8 bytes a row.
    assert second["growth_kib"] - first["growth_kib"] < extra_kib / 5, (first, second, extra_kib)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_dataset_that_is_not_a_regular_file_fails_at_once(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "data.csv"
        os.mkfifo(path)  # no writer: reading it would wait forever (it stayed Validating)
    else:
        path = Path("/dev/zero")  # reading it never ends (it read until memory ran out)
    summary = profile(_dataset(path.as_uri(), target="y"), None)
    assert summary["phase"] == "Failed"
    assert "not a regular file" in str(summary["message"])


class _Drip(http.server.BaseHTTPRequestHandler):
    """Answers 200 and then one byte every 50 ms, forever: each read is quick, the whole
    never ends (a socket timeout alone never fires)."""

    stop = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"a,y\n")
        while not self.stop.is_set():
            try:
                self.wfile.write(b"1")
                self.wfile.flush()
            except OSError:
                return
            self.stop.wait(0.05)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def drip() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    finally:
        _Drip.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        _Drip.stop.clear()


def test_a_remote_read_is_bounded_in_time(drip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTAGE_READ_TIMEOUT_SECONDS", "1")
    started = time.monotonic()
    summary = profile(_dataset(drip, target="y"), None)
    assert time.monotonic() - started < 10
    assert summary["phase"] == "Failed"
    assert "not finished after 1 s (PILOTAGE_READ_TIMEOUT_SECONDS)" in str(summary["message"])
