"""`pilotage demo` plays the whole story on real processes and says every step behaved."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.procs import pilotage

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-demo")]

DEADLINE_S = 240


def test_demo_plays_every_step(tmp_path: object) -> None:
    try:
        out = subprocess.run(
            pilotage("demo"),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"pilotage demo ran past {DEADLINE_S}s:\n{(exc.stdout or b'')[-4000:]!r}")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    text = out.stdout
    assert "every step behaved" in text
    for figure in ("accuracy", "p99", "vs SLO", "psi", "canary", "promoted"):
        assert figure in text, figure
    assert "Traceback" not in out.stderr
