"""The routing-file watcher keeps watching whatever a new file holds, and never goes back
to a table older than the active one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pilotage.router import watcher
from pilotage.router.state import RouterState
from pilotage.router.table import load_table_file as load
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


def _weights(canary: int, sequence: int | None) -> dict[str, Any]:
    variants = [
        {**TABLE["variants"][0], "weight": 100 - canary},
        {**TABLE["variants"][1], "weight": canary},
    ]
    doc = {**TABLE, "variants": variants}
    return doc if sequence is None else {**doc, "sequence": sequence}


def test_a_late_file_copy_of_a_superseded_table_does_not_turn_traffic_back(
    tmp_path: Path,
) -> None:
    """The operator pushes tables 2 (canary 20) then 3 (promoted) at once; the mounted
    ConfigMap catches up later and shows 2, then 3. The router stays on 3 throughout."""
    path = tmp_path / "routes.json"
    write_table_file(path, _weights(0, 1))
    state = RouterState(load(path), "file")
    files = watcher.FileWatcher(path, state, interval=0.01)
    assert state.apply(parse_table(_weights(20, 2)), "admin")
    assert state.apply(parse_table(_weights(100, 3)), "admin")

    write_table_file(path, _weights(20, 2))
    assert files.check() is False
    assert state.active.table.weights() == {"stable": 0, "canary": 100}
    assert state.outdated_tables == 1 and state.reload_errors == 0
    # the same sequence from the file, after the push: the push's replicas stay
    moved = _weights(100, 3)
    moved["variants"][1]["url"] = "http://127.0.0.1:9"
    write_table_file(path, moved)
    assert files.check() is False
    assert state.active.table.variants[1].url == "http://127.0.0.1:2"
    assert state.outdated_tables == 2
    # a newer table through the file (the operator could not reach this pod) applies
    write_table_file(path, _weights(50, 4))
    assert files.check() is True
    assert state.active.table.weights() == {"stable": 50, "canary": 50}
    assert state.stats_json()["sequence"] == 4


def test_a_file_the_router_started_from_is_followed_at_the_same_sequence(
    tmp_path: Path,
) -> None:
    """The embedded runtime numbers its tables but only writes the file: new replica URLs
    under the same sequence apply."""
    path = tmp_path / "routes.json"
    write_table_file(path, _weights(10, 5))
    state = RouterState(load(path), "file")
    files = watcher.FileWatcher(path, state, interval=0.01)
    moved = _weights(10, 5)
    moved["variants"][1]["url"] = "http://127.0.0.1:9"
    write_table_file(path, moved)
    assert files.check() is True
    assert state.active.table.variants[1].url == "http://127.0.0.1:9"
    write_table_file(path, _weights(30, 4))
    assert files.check() is False
    assert state.active.table.weights()["canary"] == 10


def test_tables_without_a_sequence_are_always_applied(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    write_table_file(path, _weights(0, 7))
    state = RouterState(load(path), "file")
    assert state.apply(parse_table(_weights(40, None)), "admin")  # a hand-written push
    files = watcher.FileWatcher(path, state, interval=0.01)
    write_table_file(path, _weights(60, None))
    assert files.check() is True
    assert state.active.table.weights()["canary"] == 60 and state.outdated_tables == 0
