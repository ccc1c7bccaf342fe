"""The supervisor: process groups, adoption by a new supervisor, stop without orphans."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pilotage.local.processes import Supervisor, start_ticks
from pilotage.local.store import Store
from tests.support.procs import wait_until


def _pids_in_group(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,stat="], capture_output=True, text=True)
    pids = []
    for line in out.stdout.splitlines():
        pid, group, stat = line.split()[:3]
        if int(group) == pgid and not stat.startswith("Z"):
            pids.append(int(pid))
    return pids


def test_adopt_after_restart_and_stop_whole_group(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    first = Supervisor(store)
    # a leader with a grandchild: both must go when the group is stopped
    rec = first.start(
        "server/x/1/0",
        "server",
        "ModelDeployment/x",
        ["sh", "-c", "sleep 300 & echo started; wait"],
        tmp_path / "x.log",
    )
    wait_until(lambda: len(_pids_in_group(rec.pid)) == 2, 10, what="grandchild started")
    assert rec.start_ticks == start_ticks(rec.pid)

    # a second supervisor (a restarted `pilotage up`) finds it running through the store
    second = Supervisor(Store(tmp_path / "state"))
    found = second.find("server/x/1/0")
    assert found is not None and second.running(found)

    stopped = second.stop_all(grace=5)
    assert stopped == [rec.pid]
    wait_until(lambda: not _pids_in_group(rec.pid), 10, what="group gone")
    assert second.records() == []
    first.exit_code(rec)  # reap our child


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    sup = Supervisor(store)
    rec = sup.start("run/a", "run", "TrainingJob/a", ["sleep", "300"], tmp_path / "a.log")
    from dataclasses import replace

    impostor = replace(rec, start_ticks=rec.start_ticks + 12345)
    assert not sup.running(impostor)
    sup.stop("run/a")
    assert not sup.running(rec)


def test_term_is_followed_by_kill(tmp_path: Path) -> None:
    sup = Supervisor(Store(tmp_path / "state"))
    rec = sup.start(
        "run/stubborn",
        "run",
        "TrainingJob/s",
        ["sh", "-c", "trap '' TERM; echo ready; sleep 300 & wait; sleep 300"],
        tmp_path / "s.log",
    )
    wait_until(lambda: "ready" in (tmp_path / "s.log").read_text(), 10, what="trap installed")
    sup.stop("run/stubborn", grace=0.5)
    wait_until(lambda: not _pids_in_group(rec.pid), 10, what="group killed")


def test_stop_all_keeps_the_record_of_a_finished_run(tmp_path: Path) -> None:
    """A run that ended before `pilotage up` stopped is read by the next one, not rerun."""
    sup = Supervisor(Store(tmp_path / "state"))
    done = sup.start("run/done", "run", "TrainingJob/a", ["true"], tmp_path / "done.log")
    wait_until(lambda: not sup.running(done), 10, what="run finished")
    busy = sup.start("run/busy", "run", "TrainingJob/b", ["sleep", "300"], tmp_path / "b.log")
    server = sup.start(
        "server/x/1/0", "server", "ModelDeployment/x", ["sleep", "300"], tmp_path / "s.log"
    )

    assert sorted(sup.stop_all(grace=5)) == sorted([busy.pid, server.pid])
    assert not sup.running(busy) and not sup.running(server)
    later = Supervisor(Store(tmp_path / "state"))
    assert [r.key for r in later.records()] == ["run/done"]
