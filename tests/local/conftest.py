"""Fixtures shared by the embedded runtime's tests."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotage.local.processes import start_ticks
from pilotage.local.store import Store


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state directory for `pilotage up`; every process it recorded is killed afterwards."""
    yield tmp_path / "state"
    store = Store(tmp_path / "state")
    for rec in store.processes():  # whatever happened, leave no process behind
        if start_ticks(rec.pid) == rec.start_ticks:
            os.killpg(rec.pid, signal.SIGKILL)
