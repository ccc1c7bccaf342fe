"""`pilotage demo` plays the whole story on real processes and says every step behaved."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.support.procs import pilotage

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-demo")]

DEADLINE_S = 240


def test_demo_plays_every_step() -> None:
    proc = subprocess.Popen(
        pilotage("demo"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo stops its processes on SIGTERM
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"pilotage demo ran past {DEADLINE_S}s:\n{stdout[-4000:]}")
    assert proc.returncode == 0, stdout[-6000:] + stderr[-3000:]
    assert "every step behaved" in stdout
    for figure in ("accuracy", "p99", "vs SLO", "psi", "canary", "promoted"):
        assert figure in stdout, figure
    # the retrain learned from the logged, labelled live traffic, and says how much
    assert "labelled requests of live traffic" in stdout
    assert "on the same held-out rows" in stdout
    assert "Traceback" not in stderr
