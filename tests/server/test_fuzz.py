"""Schemathesis, driven by the server's own OpenAPI document, finds no 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import Server, StartServer

pytestmark = pytest.mark.xdist_group("server-fuzz")

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module", params=["iris", "churn"])
def server(request: pytest.FixtureRequest, start_server: StartServer) -> Iterator[Server]:
    with start_server(request.param, "--max-batch-size", "8", "--enable-fault-injection") as s:
        yield s


def schemathesis(server: Server, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert SCHEMATHESIS, "schemathesis is not installed in this environment"
    return subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=workdir,  # schemathesis keeps a cache folder in its working directory
    )


def test_no_server_errors(server: Server, tmp_path: Path) -> None:
    # /admin/faults is fuzzed on its own below: a fuzzed errorRate would make 500s on purpose
    done = schemathesis(server, tmp_path, "--exclude-path", "/admin/faults")
    assert done.returncode == 0, done.stdout[-4000:]
    assert server.process.alive()
    done = schemathesis(server, tmp_path, "--include-path", "/admin/faults")
    assert done.returncode == 0, done.stdout[-4000:]
    assert server.process.alive()
