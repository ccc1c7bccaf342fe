"""Child processes of the embedded runtime: started in their own process group, recorded
in the store, adopted again after a restart, stopped with SIGTERM then SIGKILL.

A process outlives a `pilotage up` that is killed with SIGKILL (it has its own session),
so the next `pilotage up` finds it through the store and carries on with it. The record
holds the process's start time (from ``/proc``) beside its pid, so a pid the kernel has
since given to an unrelated program is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from pilotage.local.store import ProcessRecord, Store, now_rfc3339

STOP_GRACE_S = 5.0


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Supervisor:
    """Starts, finds and stops the runtime's processes; one per state directory."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def start(
        self,
        key: str,
        role: str,
        owner: str,
        argv: list[str],
        log_path: Path,
        *,
        port: int | None = None,
        info: dict[str, Any] | None = None,
        stdout_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> ProcessRecord:
        """Start ``argv`` in a new session with its output in ``log_path`` and record it."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as files:
            log = files.enter_context(open(log_path, "ab"))
            out = files.enter_context(open(stdout_path, "ab")) if stdout_path else log
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
            )
        self._children[popen.pid] = popen
        record = ProcessRecord(
            key=key,
            role=role,
            owner=owner,
            pid=popen.pid,
            start_ticks=start_ticks(popen.pid) or 0,
            argv=argv,
            port=port,
            log_path=str(log_path),
            info=info or {},
            started=now_rfc3339(),
        )
        self.store.save_process(record)
        return record

    def find(self, key: str) -> ProcessRecord | None:
        return next((p for p in self.store.processes() if p.key == key), None)

    def records(self, prefix: str = "") -> list[ProcessRecord]:
        return [p for p in self.store.processes() if p.key.startswith(prefix)]

    def alive(self, record: ProcessRecord) -> bool:
        """Whether the recorded process is still the one we started and still running."""
        child = self._children.get(record.pid)
        if child is not None and child.poll() is not None:
            return False
        ticks = start_ticks(record.pid)
        return ticks is not None and (record.start_ticks == 0 or ticks == record.start_ticks)

    def stop(self, key: str, grace: float = STOP_GRACE_S) -> None:
        """Stop a process (its whole group) and forget it. Missing processes are fine."""
        record = self.find(key)
        if record is None:
            return
        self._terminate([record], grace)
        self.store.forget_process(key)

    def stop_all(self, grace: float = STOP_GRACE_S) -> list[int]:
        """Stop every running process, routers first; returns the pids that were stopped.

        A finished run stays recorded: its exit status and summary are read by the next
        runtime on this state directory, which would otherwise start the run again.
        """
        records = self.store.processes()
        running = [r for r in records if self.running(r)]
        # Routers first: each drains its in-flight requests while the servers behind it
        # still answer (stopping both at once gave a client in flight a 502).
        self._terminate([r for r in running if r.role == "router"], grace)
        self._terminate([r for r in running if r.role != "router"], grace)
        for r in records:
            if r in running or r.role != "run":
                self.store.forget_process(r.key)
        return [r.pid for r in running]

    def _terminate(self, records: list[ProcessRecord], grace: float) -> None:
        mine = [r for r in records if self.running(r)]
        for r in mine:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(self.running(r) for r in mine):
            time.sleep(0.05)
        for r in mine:
            if self.running(r):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(r.pid, signal.SIGKILL)
        for r in mine:
            child = self._children.pop(r.pid, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=grace)

    def running(self, record: ProcessRecord) -> bool:
        """Whether anything of the recorded process group still runs (leader or members).

        The kernel never hands out a pid that is still some group's id, so a live group
        whose id is our leader's pid is ours even after the leader has exited.
        """
        child = self._children.get(record.pid)
        if child is not None:
            child.poll()  # reap an exited leader so that it stops counting
        ticks = start_ticks(record.pid)
        if ticks is not None:
            return record.start_ticks == 0 or ticks == record.start_ticks
        return group_alive(record.pid)

    def exit_code(self, record: ProcessRecord) -> int | None:
        """The exit status of a child this supervisor started, when it has ended."""
        child = self._children.get(record.pid)
        return None if child is None else child.poll()
