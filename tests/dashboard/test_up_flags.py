"""`pilotage up`'s dashboard flags on a real process: a taken `--dashboard-port` is one
clear line before anything is applied; `--no-dashboard` serves none; by default the
line comes before the live view and the page answers."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from pilotage.local.store import Store
from tests.support.procs import Process, free_port, pilotage, wait_until

pytestmark = pytest.mark.xdist_group("dashboard-up-flags")
ROOT = Path(__file__).resolve().parents[2]


def test_a_taken_dashboard_port_is_one_line_and_nothing_is_applied(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            pilotage(
                "up",
                "--state-dir",
                str(tmp_path / "state"),
                "--dashboard-port",
                str(port),
                "-f",
                str(ROOT / "examples/quickstart.yaml"),
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"pilotage up: error: cannot listen on the dashboard 127.0.0.1:{port} "
        "(Address already in use)"
    )
    assert Store(tmp_path / "state").objects() == []


@pytest.mark.parametrize("serve", [True, False])
def test_no_dashboard_serves_none(tmp_path: Path, serve: bool) -> None:
    port = free_port()
    args = ["up", "--state-dir", str(tmp_path / "state"), "--dashboard-port", str(port)]
    up = Process(pilotage(*args, *([] if serve else ["--no-dashboard"])), tmp_path / "up.log")
    try:
        wait_until(lambda: "pilotage up: state in" in up.log(), 30, 0.05, "up started")
        lines = up.log().splitlines()
        if serve:
            assert lines[0] == f"dashboard: http://127.0.0.1:{port}/"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                assert "No resources yet." in page.read().decode()
        else:
            assert not any(line.startswith("dashboard:") for line in lines)
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        assert up.stop() == 0
