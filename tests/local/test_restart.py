"""A graceful stop and restart of `pilotage up` loses no more than a crash: the router
keeps its endpoint (the port is reused; if another program took it meanwhile the move is
said in status and in an event) and a canary pause keeps its elapsed time. On the stop,
routers drain before the servers behind them stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pilotage.local.processes import Supervisor, start_ticks
from pilotage.local.store import Store
from tests.local.test_up import _events, _status, _up, _write, up_env  # noqa: F401
from tests.support.procs import pilotage, wait_until

API = "pilotage.dev/v1alpha1"


def _job(name: str, algorithm: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainingJob",
        "metadata": {"name": name, "labels": {"app": "iris"}},
        "spec": {"datasetRef": {"name": "iris"}, "model": {"algorithm": algorithm}},
    }


DOCS = [
    {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": "iris"},
        "spec": {"source": {"uri": "builtin://iris"}, "target": "target"},
    },
    _job("iris-v1", "decision_tree"),
    {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"trainingJobSelector": {"matchLabels": {"app": "iris"}}},
            "strategy": {
                "type": "Canary",
                "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}]},
            },
            "analysis": {"interval": "1s", "minRequests": 1000},
        },
    },
]


def _predict(endpoint: str) -> int:
    body = json.dumps({"instances": [[5.9, 3.0, 4.2, 1.5]]}).encode()
    req = urllib.request.Request(
        f"{endpoint}/v1/models/iris:predict", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status


def _answers(endpoint: str) -> bool:
    try:
        return _predict(endpoint) == 200
    except OSError:
        return False


def _in_pause(store: Store) -> dict[str, Any] | None:
    st = _status(store, "ModelDeployment", "iris")
    ok = (st.get("candidate") or {}).get("version") == "iris-v2" and st.get("currentStep") == 1
    ok = ok and (st.get("traffic") or {}).get("canary") == 50 and st.get("phase") == "Progressing"
    return st if ok and st.get("stepStarted") else None


def _until(fn: Any, timeout: float, what: str) -> Any:
    """``fn()``'s first truthy value, polled until ``timeout``."""
    found: list[Any] = []

    def check() -> bool:
        value = fn()
        if value:
            found.append(value)
        return bool(value)

    wait_until(check, timeout, 0.1, what)
    return found[-1]


def _sigint(up: Any) -> None:
    os.kill(up.pid, signal.SIGINT)
    assert up.popen.wait(30) == 0


@pytest.mark.slow
def test_a_graceful_restart_keeps_the_endpoint_and_the_pause(
    up_env: tuple[Path, Path],  # noqa: F811
) -> None:
    state, tmp = up_env
    up = _up(state, tmp, "up1.log", _write(tmp / "m.yaml", DOCS))
    store = Store(state)
    try:
        _until(
            lambda: _status(store, "ModelDeployment", "iris").get("phase") == "Healthy",
            180,
            "iris-v1 serving",
        )
        v2 = _write(tmp / "v2.yaml", [_job("iris-v2", "logistic_regression")])
        subprocess.run(pilotage("apply", "-f", str(v2), "--state-dir", str(state)), check=True)
        st = _until(lambda: _in_pause(store), 180, "iris-v2 in its pause at 50 %")
        endpoint, step_started = st["endpoint"], st["stepStarted"]
        assert _predict(endpoint) == 200
        _sigint(up)

        # --- a clean restart: same endpoint, same step clock
        up = _up(state, tmp, "up2.log")

        def serving_again() -> dict[str, Any] | None:
            st = _in_pause(store)
            if st is None or st.get("lastAnalysis") is None:
                return None  # an analysis proves the candidate server is back and routed
            return st if _answers(endpoint) else None

        st = _until(serving_again, 60, "serving again on the old endpoint")
        assert st["endpoint"] == endpoint
        assert st["stepStarted"] == step_started
        assert st.get("endpointNote", "") == ""
        assert _events(store, "EndpointChanged") == []
        _sigint(up)

        # --- the port was taken meanwhile: the endpoint moves, and says so
        port = int(endpoint.rsplit(":", 1)[1])
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        try:
            up = _up(state, tmp, "up3.log")
            moved = _until(
                lambda: (
                    (s := _status(store, "ModelDeployment", "iris")).get("endpoint") != endpoint
                    and s.get("endpointNote")
                    and s
                ),
                60,
                "the endpoint to move",
            )
            assert f"port {port} was taken" in moved["endpointNote"]
            assert f"endpoint moved from {endpoint} to {moved['endpoint']}" in moved["endpointNote"]
            changed = _events(store, "EndpointChanged")
            assert len(changed) == 1 and f"port {port} was taken" in changed[0]
            wait_until(lambda: _answers(moved["endpoint"]), 60, 0.1, "the new endpoint")
        finally:
            squatter.close()
    finally:
        up.stop()


def _router(store: Store) -> Any:
    """The router's record, if its process is alive (a recycled pid does not count)."""
    for rec in store.processes():
        if rec.role == "router" and start_ticks(rec.pid) == rec.start_ticks:
            return rec
    return None


def _time_wait(port: int) -> bool | None:
    """Whether a connection on ``port`` sits in TIME_WAIT (None without ``ss``)."""
    try:
        out = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return "TIME-WAIT" in out.stdout if out.returncode == 0 else None


@pytest.mark.slow
def test_a_router_killed_under_up_comes_back_on_its_endpoint(
    up_env: tuple[Path, Path],  # noqa: F811
) -> None:
    # issue 16.14: under `up`, every router crash picked a new port (52313 -> 54365 ->
    # 38113) because the connections it had served sat in TIME_WAIT on the old one
    state, tmp = up_env
    up = _up(state, tmp, "up.log", _write(tmp / "m.yaml", DOCS))
    store = Store(state)
    try:
        _until(
            lambda: _status(store, "ModelDeployment", "iris").get("phase") == "Healthy",
            180,
            "iris-v1 serving",
        )
        endpoint = _status(store, "ModelDeployment", "iris")["endpoint"]
        port = int(endpoint.rsplit(":", 1)[1])
        for crash in range(2):
            # traffic first, one connection per request that the router closes (urllib
            # sends `connection: close`), so its side of each ends in TIME_WAIT
            for _ in range(20):
                assert _predict(endpoint) == 200
            assert _time_wait(port) in (True, None)
            victim = _until(lambda: _router(store), 30, "the router's record")
            os.kill(victim.pid, signal.SIGKILL)

            def back(gone: int = victim.pid) -> dict[str, Any] | None:
                rec = _router(store)
                if rec is None or rec.pid == gone:
                    return None
                st = _status(store, "ModelDeployment", "iris")
                if st.get("endpoint") != endpoint:
                    return st  # moved: the assertion below says where
                return st if _answers(endpoint) else None

            st = _until(back, 60, f"a new router answering on {endpoint} (crash {crash + 1})")
            assert st["endpoint"] == endpoint, st.get("endpointNote")
            assert st.get("endpointNote", "") == ""
        assert _events(store, "EndpointChanged") == []
    finally:
        up.stop()


ECHO = """
import signal, sys, time
path, delay = sys.argv[1], float(sys.argv[2])
def on_term(*_):
    with open(path, "a") as f:
        f.write(f"term {time.monotonic()}\\n")
    time.sleep(delay)  # a router drains its in-flight requests
    with open(path, "a") as f:
        f.write(f"exit {time.monotonic()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(path + ".ready", "w").close()
while True:
    time.sleep(1)
"""


def test_stop_all_stops_routers_before_the_servers_behind_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    supervisor = Supervisor(store)
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    logs = {role: tmp_path / f"{role}.times" for role in ("server", "router", "run")}
    for role, path in logs.items():
        delay = "0.5" if role == "router" else "0"
        supervisor.start(
            f"{role}/iris",
            role,
            "ModelDeployment/iris",
            [sys.executable, str(script), str(path), delay],
            tmp_path / f"{role}.log",
        )
    for path in logs.values():
        wait_until(lambda p=path: Path(str(p) + ".ready").exists(), 30, 0.02, f"{path} ready")
    try:
        supervisor.stop_all()
        times = {
            role: dict(line.split() for line in path.read_text().splitlines())
            for role, path in logs.items()
        }
        router_exit = float(times["router"]["exit"])
        assert float(times["server"]["term"]) >= router_exit
        assert float(times["run"]["term"]) >= router_exit
    finally:
        for rec in store.processes():
            if start_ticks(rec.pid) == rec.start_ticks:
                os.killpg(rec.pid, signal.SIGKILL)


def test_the_free_port_probe_accepts_a_port_in_time_wait() -> None:
    # A restarted router binds with SO_REUSEADDR; the probe must judge the port the same
    # way, or every restart after traffic moved the endpoint (issue 16.14).
    from pilotage.listening import listen
    from pilotage.local.platform import _port_free

    server = listen("127.0.0.1", 0)
    port = server.getsockname()[1]
    server.setblocking(True)
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection is in TIME_WAIT
    client.close()
    server.close()
    out = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True)
    if out.returncode == 0:
        assert "TIME-WAIT" in out.stdout, out.stdout
    assert _port_free(port)
    taken = listen("127.0.0.1", 0)
    try:
        assert not _port_free(taken.getsockname()[1])
    finally:
        taken.close()
    _ = time
