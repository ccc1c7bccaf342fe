"""`pilotage up -f PATH…`: apply manifests and run the embedded control plane in the foreground.

Ctrl-C (SIGINT) or SIGTERM stops every process the runtime started (SIGTERM to each
process group, SIGKILL after a grace period) before exiting. A `pilotage up` killed
with SIGKILL leaves its processes running; the next `pilotage up` on the same state
directory adopts them and carries on without retraining what is done.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

from pilotage.api import KIND_ORDER
from pilotage.local.cli import apply_resources, load_manifests, state_dir
from pilotage.local.errors import CliError
from pilotage.local.platform import LocalPlatform
from pilotage.local.processes import Supervisor
from pilotage.local.runtime import Runtime, TickReport
from pilotage.local.store import DEFAULT_NAMESPACE, Store, StoreError
from pilotage.local.view import SUMMARY_HEADERS, render_table, summary_rows

LOCK_FILE = "up.lock"
DASHBOARD_PORT = 8470


class StateLock:
    """One `pilotage up` per state directory (an flock, released when the process dies)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        f = open(self.path, "a+")  # noqa: SIM115 - held for the life of the process
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise CliError(
                f"another `pilotage up` (pid {holder}) is running on {self.path.parent}; "
                "stop it first or use another --state-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


COUNT = re.compile(r"\bn=\d+")


class Display:
    """The live view: a table redrawn in place on a terminal, change lines otherwise."""

    def __init__(
        self,
        store: Store,
        out: IO[str],
        tty: bool,
        namespace: str | None,
        terminal_size: Callable[[], os.terminal_size] = shutil.get_terminal_size,
    ) -> None:
        self.store = store
        self.out = out
        self.tty = tty
        self.namespace = namespace
        self.terminal_size = terminal_size
        self._last_rows: dict[str, list[str]] = {}
        self._event_id = max(
            (i for i, _ in store.events(namespace=namespace or DEFAULT_NAMESPACE)), default=0
        )
        self._drawn_lines = 0
        self._recent: list[str] = []
        self._last_text = ""

    def update(self, report: TickReport) -> None:
        resources = sorted(
            self.store.objects(namespace=self.namespace), key=lambda r: KIND_ORDER.index(r.kind)
        )
        # a change line has the whole detail; the table keeps its columns narrow
        rows = summary_rows(resources, detail_width=70 if self.tty else None)
        new_events = self.store.events(
            namespace=self.namespace or DEFAULT_NAMESPACE, after_id=self._event_id
        )
        if new_events:
            self._event_id = new_events[-1][0]
        event_lines = [
            f"{e.time[11:19]} {e.type[0]} {e.kind}/{e.name} {e.reason}: {e.message}"
            for _, e in new_events
        ]
        if self.tty:
            self._recent = (self._recent + event_lines)[-10:]
            self._redraw(rows, report)
            return
        stamp = time.strftime("%H:%M:%S")
        for row in rows:
            # A count that grows every tick (`n=37` while a DriftMonitor fills its first
            # window) is no change worth a line of its own: compare without it.
            key = [COUNT.sub("n=…", field) for field in row]
            if self._last_rows.get(row[0]) != key:
                self._last_rows[row[0]] = key
                fields = "  ".join(f for f in row[1:] if f and f != "-")
                print(f"{stamp} {row[0]}: {fields}", file=self.out)
        for gone in set(self._last_rows) - {row[0] for row in rows}:
            del self._last_rows[gone]
            print(f"{stamp} {gone}: deleted", file=self.out)
        for line in event_lines:
            print(f"{line}", file=self.out)
        for err in report.errors:
            print(f"{stamp} error: {err}", file=self.out)
        self.out.flush()

    def _redraw(self, rows: list[list[str]], report: TickReport) -> None:
        size = self.terminal_size()
        table = render_table(SUMMARY_HEADERS, rows).splitlines() if rows else ["(no resources)"]
        tail = [f"error: {e}" for e in report.errors] + ["", "Ctrl-C stops everything."]
        # the cursor goes back up by the number of lines drawn: every line must fit on one
        # terminal row, and the whole view on the screen, or the next frame lands too low
        room = max(size.lines - 1 - len(table) - len(tail) - 2, 1)
        events = [f"  {e}" for e in self._recent[-room:]] or ["  (none yet)"]
        lines = [*table, "", "Recent events:", *events, *tail][: max(size.lines - 1, 1)]
        width = max(size.columns - 1, 1)
        text = "".join(f"\x1b[2K{line[:width]}\n" for line in lines)
        if text == self._last_text:
            return
        self._last_text = text
        up_moves = f"\x1b[{self._drawn_lines}F" if self._drawn_lines else ""
        # clear leftover lines when the view got shorter
        self.out.write(up_moves + text + "\x1b[J")
        self.out.flush()
        self._drawn_lines = len(lines)


class Dashboard:
    """The web dashboard of `pilotage up`: its server thread and its status sampler."""

    def __init__(self, server: Any, sampler: Any) -> None:
        self.server = server
        self.sampler = sampler
        self.url: str = server.url

    def stop(self) -> None:
        self.sampler.stop()
        self.server.stop()


def start_dashboard(directory: Path, runtime: Runtime, port: int | None) -> Dashboard:
    """Serve the dashboard on 127.0.0.1 (``port``; by default DASHBOARD_PORT, or any free
    port when that one is taken) over the same state; the control loop feeds its charts."""
    from pilotage.dashboard.app import DashboardApp, Sampler
    from pilotage.dashboard.history import History, runtime_observer
    from pilotage.dashboard.serve import BackgroundServer
    from pilotage.dashboard.source import LocalSource

    source = LocalSource(directory)
    history = History()
    app = DashboardApp(source, history)
    if port is not None:
        server = BackgroundServer(app, "127.0.0.1", port)
    else:
        try:
            server = BackgroundServer(app, "127.0.0.1", DASHBOARD_PORT)
        except OSError:
            server = BackgroundServer(app, "127.0.0.1", 0)
    runtime.observers.append(runtime_observer(history))
    sampler = Sampler(source, history)
    sampler.start()
    server.start()
    return Dashboard(server, sampler)


def build_runtime(directory: Path) -> tuple[Store, Runtime]:
    store = Store(directory)
    platform = LocalPlatform(store, Supervisor(store))
    return store, Runtime(store, platform)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pilotage up",
        description="Apply manifests and run the embedded control plane in the foreground.",
    )
    p.add_argument(
        "-f", "--filename", action="append", default=[], help="file or directory (repeatable)"
    )
    p.add_argument(
        "--state-dir", help="state directory (default $PILOTAGE_STATE_DIR or ./.pilotage)"
    )
    p.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE)
    p.add_argument(
        "--interval", type=float, default=0.25, help="seconds between ticks (default 0.25)"
    )
    p.add_argument(
        "--plain", action="store_true", help="print change lines even on a terminal (no live table)"
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        help=f"port of the web dashboard on 127.0.0.1 (default {DASHBOARD_PORT}, or a free "
        "port when that one is taken)",
    )
    p.add_argument("--no-dashboard", action="store_true", help="do not serve the web dashboard")
    args = p.parse_args(argv)
    directory = state_dir(args.state_dir)
    lock = StateLock(directory)
    dashboard: Dashboard | None = None
    try:
        resources = load_manifests(args.filename) if args.filename else []
        lock.acquire()
        store, runtime = build_runtime(directory)
        if not args.no_dashboard:
            dashboard = start_dashboard(directory, runtime, args.dashboard_port)
        for line in apply_resources(store, resources, args.namespace):
            print(line)
    except (CliError, StoreError, OSError) as exc:
        if dashboard is not None:
            dashboard.stop()
        lock.release()
        for line in str(exc).splitlines():
            print(f"pilotage up: error: {line}", file=sys.stderr)
        return 1
    if dashboard is not None:
        print(f"dashboard: {dashboard.url}")

    supervisor = runtime.platform.supervisor
    adopted = [r for r in supervisor.records() if supervisor.running(r)]
    print(f"pilotage up: state in {directory.resolve()} (pid {os.getpid()})")
    if adopted:
        print(
            f"pilotage up: adopted {len(adopted)} running process(es) from the previous run: "
            + ", ".join(f"{r.key} (pid {r.pid})" for r in adopted)
        )
    sys.stdout.flush()

    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        runtime.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    display = Display(store, sys.stdout, sys.stdout.isatty() and not args.plain, args.namespace)
    try:
        runtime.run(args.interval, display.update)
    finally:
        if dashboard is not None:
            dashboard.stop()
        # finished runs stay recorded (their exit status is read later): count the live ones
        running = [r for r in supervisor.records() if supervisor.running(r)]
        print(f"\npilotage up: stopping {len(running)} running process(es)…", flush=True)
        runtime.platform.stop_everything()
        print(
            f"pilotage up: stopped {len(running)} process(es); state kept in {directory}",
            flush=True,
        )
        lock.release()
    return 0
