"""The embedded runtime's control loop on a thread, for tests and benchmarks that drive
`pilotage up`'s code in-process with real server and router processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pilotage.local.runtime import Runtime
from pilotage.local.store import Store
from pilotage.local.up import build_runtime


@contextmanager
def control_plane(state: Path, interval: float = 0.1) -> Iterator[tuple[Store, Runtime]]:
    """A store and a runtime ticking every ``interval`` on a thread; on exit the loop stops
    and every process it started is stopped."""
    store, runtime = build_runtime(state)
    loop = threading.Thread(target=runtime.run, args=(interval,), daemon=True)
    loop.start()
    try:
        yield store, runtime
    finally:
        runtime.stop_event.set()
        loop.join(15)
        runtime.platform.stop_everything()
        store.close()
