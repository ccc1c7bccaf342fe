"""Watching the routing file: a changed file becomes the active table within one poll.

The writer replaces the file atomically (``write_table_file``, or the kubelet's
symlink swap in a mounted ConfigMap); the watcher compares (inode, mtime, size) of
what the path resolves to every ``interval`` seconds. An invalid new file is
reported and ignored: the previous table stays active.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pilotage.router.state import RouterState
from pilotage.router.table import load_table_file
from pilotage.wire.routes import RoutingError

DEFAULT_INTERVAL = 0.25


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class FileWatcher:
    def __init__(self, path: Path, state: RouterState, interval: float = DEFAULT_INTERVAL):
        self.path = path
        self.state = state
        self.interval = interval
        self._stamp = _stamp(path)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def check(self) -> bool:
        """Load the file if it changed since the last look; True when a new table is active."""
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            table = load_table_file(self.path)
        except RoutingError as exc:
            self.state.reload_failed(str(exc))
            return False
        except Exception as exc:  # a parser bug must not end the watching for good
            self.state.reload_failed(f"{self.path}: cannot load: {type(exc).__name__}: {exc}")
            return False
        if table.deployment != self.state.active.table.deployment:
            self.state.reload_failed(
                f"{self.path}: deployment {table.deployment!r} is not the one this router serves "
                f"({self.state.active.table.deployment!r})"
            )
            return False
        return self.state.apply(table, "file")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
