"""A model server that exits at every start is restarted after a doubling delay, and the
platform says it is failing (issue 16, item 15: a tampered artifact made `pilotage up`
restart its server about once a second, forever, with nothing in the status).

The server here is a stand-in for `pilotage serve` on a tampered artifact: a real process
that prints the refusal the real server prints and exits 1 at once, so that the restart
rhythm, not the server's start-up time, is what the test sees."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from pilotage.control.common import CRASH_LOOP_CRASHES
from pilotage.control.types import EnsureServer
from pilotage.local.platform import LocalPlatform
from pilotage.local.processes import Supervisor
from pilotage.local.store import Store
from tests.support.procs import wait_until

REFUSAL = (
    "pilotage serve: error: refusing to serve file:///m/v2: sha256 of model.onnx is 1f2e "
    "but model.json says 9a8b (corrupt or tampered artifact)"
)


def _tampered_server(tmp_path: Path) -> str:
    script = tmp_path / "serve-tampered"
    script.write_text(f"#!/bin/sh\necho '{REFUSAL}' >&2\nexit 1\n")
    script.chmod(0o755)
    return str(script)


def test_a_server_that_cannot_start_is_restarted_with_backoff(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    supervisor = Supervisor(store)
    platform = LocalPlatform(store, supervisor, python=_tampered_server(tmp_path))
    action = EnsureServer("iris", "v2", "file:///m/v2", 1)
    starts: list[tuple[float, int]] = []
    began = time.monotonic()

    def tick() -> None:
        """One pass of the control loop's action, noting each new server process."""
        platform.carry_out(action)
        for record in platform.server_records("iris", "v2"):
            if not starts or starts[-1][1] != record.pid:
                starts.append((time.monotonic() - began, record.pid))

    def failing() -> bool:
        tick()
        states = platform.servers("default", "iris")
        return bool(states) and states[0].failing

    try:
        while time.monotonic() - began < 3.6:  # the control loop ticks far more often
            tick()
            time.sleep(0.05)
        # Without backoff: a start every tick (about 70). With it: at 0, ~1 s, ~3 s.
        assert 2 <= len(starts) <= 3, starts
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(starts)]
        assert gaps[0] >= 0.9, starts
        assert len(gaps) < 2 or gaps[1] >= 1.9, starts

        wait_until(failing, timeout=15, what=f"a crash loop after {CRASH_LOOP_CRASHES} exits")
        state = platform.servers("default", "iris")[0]
        assert state.version == "v2" and not state.ready
        assert state.restarts >= CRASH_LOOP_CRASHES
        assert "sha256 of model.onnx" in state.message and "tampered" in state.message
    finally:
        supervisor.stop_all(grace=1.0)
        store.close()
