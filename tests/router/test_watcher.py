"""The routing-file watcher keeps watching whatever a new file holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pilotage.router import watcher
from pilotage.router.state import RouterState
from pilotage.router.table import write_table_file
from pilotage.wire.routes import parse_table

TABLE: dict[str, Any] = {
    "deployment": "iris",
    "mode": "canary",
    "variants": [
        {"name": "stable", "url": "http://127.0.0.1:1", "weight": 90, "version": "1"},
        {"name": "canary", "url": "http://127.0.0.1:2", "weight": 10, "version": "2"},
    ],
}


def _touch(path: Path, bump: int) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))


def test_an_unexpected_loader_error_is_reported_and_watching_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routes.json"
    write_table_file(path, TABLE)
    state = RouterState(parse_table(TABLE), "file")
    files = watcher.FileWatcher(path, state, interval=0.01)

    def broken_loader(_: Path) -> None:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(watcher, "load_table_file", broken_loader)
    _touch(path, 1_000_000)
    assert files.check() is False
    assert state.reload_errors == 1
    assert "TypeError" in (state.last_reload_error or "")

    monkeypatch.undo()
    halves = [{**variant, "weight": 50} for variant in TABLE["variants"]]
    write_table_file(path, {**TABLE, "variants": halves})
    assert files.check() is True
    assert state.active.table.weights() == {"stable": 50, "canary": 50}
