"""`pilotage up` end to end on real processes: train → serve → canary under traffic → an
injected latency breach rolls back at the first analysis → a healthy version promotes
through every step; SIGKILL + restart adopts everything without retraining; SIGINT
leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilotage.local.processes import start_ticks
from pilotage.local.store import Store
from tests.support.procs import Process, pilotage, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-up")]

API = "pilotage.dev/v1alpha1"
INTERVAL_S = 2


def _job(name: str, algorithm: str, **hyper: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainingJob",
        "metadata": {"name": name, "labels": {"app": "iris"}},
        "spec": {
            "datasetRef": {"name": "iris"},
            "model": {"algorithm": algorithm, "hyperparameters": hyper},
            "evaluation": {"gates": [{"metric": "accuracy", "min": 0.8}]},
        },
    }


BASE = [
    {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": "iris"},
        "spec": {"source": {"uri": "builtin://iris"}, "target": "target"},
    },
    _job("iris-v1", "logistic_regression", max_iter=300),
    {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"trainingJobSelector": {"matchLabels": {"app": "iris"}}},
            "strategy": {
                "type": "Canary",
                "canary": {
                    "steps": [
                        {"setWeight": 30},
                        {"pause": {"duration": "2s"}},
                        {"setWeight": 60},
                        {"pause": {"duration": "2s"}},
                    ]
                },
            },
            "analysis": {
                "interval": f"{INTERVAL_S}s",
                "failureLimit": 0,
                "minRequests": 5,
                "latency": {"p99Ms": 150},
            },
        },
    },
]


def _write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("\n---\n".join(json.dumps(d) for d in docs))
    return path


def _status(store: Store, kind: str, name: str) -> dict[str, Any]:
    res = store.find(kind, name)
    return dict(res.dump().get("status") or {}) if res else {}


def _events(store: Store, reason: str | None = None) -> list[str]:
    return [
        f"{e.kind}/{e.name} {e.reason}: {e.message}"
        for _, e in store.events()
        if reason is None or e.reason == reason
    ]


class Traffic:
    def __init__(self, endpoint: str) -> None:
        self.url = f"{endpoint}/v1/models/iris:predict"
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(3)]
        for t in self.threads:
            t.start()

    def _loop(self) -> None:
        body = json.dumps({"instances": [[5.9, 3.0, 4.2, 1.5]]}).encode()
        while not self.stop.is_set():
            req = urllib.request.Request(self.url, body, {"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    resp.read()
            except OSError as exc:
                self.errors.append(str(exc))
            self.stop.wait(0.02)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def up_env(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "state", tmp_path
    # whatever happened, leave no process behind
    store = Store(tmp_path / "state")
    for rec in store.processes():
        if start_ticks(rec.pid) == rec.start_ticks:
            os.killpg(rec.pid, signal.SIGKILL)


def _up(state: Path, tmp: Path, log: str, *files: Path) -> Process:
    args = ["up", "--state-dir", str(state), "--interval", "0.1"]
    for f in files:
        args += ["-f", str(f)]
    return Process(pilotage(*args), tmp / log)


def _healthy_on(store: Store, version: str) -> dict[str, Any] | None:
    st = _status(store, "ModelDeployment", "iris")
    ok = st.get("phase") == "Healthy" and (st.get("stable") or {}).get("version") == version
    return st if ok else None


def test_rollout_rollback_promotion_recovery_and_clean_stop(
    up_env: tuple[Path, Path],
) -> None:
    state, tmp = up_env
    up = _up(state, tmp, "up1.log", _write(tmp / "base.yaml", BASE))
    store = Store(state)
    traffic: Traffic | None = None
    try:
        wait_until(lambda: _healthy_on(store, "iris-v1"), 120, 0.1, "iris-v1 serving")
        endpoint = _status(store, "ModelDeployment", "iris")["endpoint"]
        traffic = Traffic(endpoint)

        # --- v2 goes to canary; a latency breach rolls it back at the first analysis
        v2 = _write(tmp / "v2.yaml", [_job("iris-v2", "decision_tree", max_depth=3)])
        subprocess.run(pilotage("apply", "-f", str(v2), "--state-dir", str(state)), check=True)

        def canary_weight() -> int:
            st = _status(store, "ModelDeployment", "iris")
            if (st.get("candidate") or {}).get("version") != "iris-v2":
                return 0
            return int((st.get("traffic") or {}).get("canary", 0))

        wait_until(lambda: canary_weight() > 0, 120, 0.1, "iris-v2 in canary")
        servers = [r for r in store.processes() if r.key.startswith("server/iris/iris-v2/")]
        assert servers
        for rec in servers:
            req = urllib.request.Request(
                f"http://127.0.0.1:{rec.port}/admin/faults",
                json.dumps({"latencyMs": 400}).encode(),
                {"content-type": "application/json"},
            )
            urllib.request.urlopen(req, timeout=5).read()
        injected = time.time()
        analyses: list[dict[str, Any]] = []

        def rolled_back() -> bool:
            st = _status(store, "ModelDeployment", "iris")
            if st.get("lastAnalysis"):
                analyses.append(st["lastAnalysis"])
            history = st.get("history") or []
            return bool(history) and history[-1]["action"] == "RolledBack"

        wait_until(rolled_back, 30, 0.05, "the rollback of iris-v2")
        st = _status(store, "ModelDeployment", "iris")
        assert st["phase"] == "Degraded"
        assert st["traffic"] == {"stable": 100}
        assert (st["stable"] or {})["version"] == "iris-v1"
        assert st["history"][-1]["version"] == "iris-v2"
        assert "p99" in st["history"][-1]["message"]
        # the first analysis that ended after the injection is the one that rolled back:
        # no passing analysis of iris-v2 came between
        after = [
            a
            for a in analyses
            if time.mktime(time.strptime(a["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            >= injected
        ]
        assert all(a["verdict"] == "Fail" for a in after), after
        assert st["lastAnalysis"]["p99Ms"] > 150

        # --- a healthy version is promoted through every step
        v3 = _write(tmp / "v3.yaml", [_job("iris-v3", "logistic_regression", C=0.5, max_iter=300)])
        subprocess.run(pilotage("apply", "-f", str(v3), "--state-dir", str(state)), check=True)
        wait_until(lambda: _healthy_on(store, "iris-v3"), 120, 0.1, "iris-v3 promoted")
        steps = [e for e in _events(store) if "canary iris-v3 at weight" in e]
        assert [s.split("at weight ")[1].split()[0] for s in steps] == ["30", "60"]
        assert any("Promoted" in e and "iris-v3" in e for e in _events(store))
        assert not traffic.errors, traffic.errors[:3]

        # the former stable's server stops once the router serves the promoted table
        wait_until(
            lambda: not [r for r in store.processes() if r.key.startswith("server/iris/iris-v1/")],
            30,
            0.1,
            "iris-v1's server stopped",
        )

        # --- SIGKILL: the processes live on; a new `up` adopts them without retraining
        before = {r.key: (r.pid, r.start_ticks) for r in store.processes()}
        trained = len(_events(store, "TrainingStarted"))
        model_dir = Path(
            _status(store, "TrainingJob", "iris-v3")["modelUri"].removeprefix("file://")
        )
        stamp = (model_dir / "model.onnx").stat().st_mtime_ns
        os.kill(up.pid, signal.SIGKILL)
        up.popen.wait(10)
        serving = {k: v for k, v in before.items() if not k.startswith("run/")}
        assert len(serving) == 2  # the router and the iris-v3 server
        assert all(start_ticks(pid) == ticks for pid, ticks in serving.values())

        up = _up(state, tmp, "up2.log")
        wait_until(lambda: "adopted" in up.log(), 30, 0.1, "adoption")
        time.sleep(1.0)  # a few control-loop ticks on the adopted state
        assert _healthy_on(store, "iris-v3")
        assert _status(store, "ModelDeployment", "iris")["endpoint"] == endpoint
        after_restart = {r.key: (r.pid, r.start_ticks) for r in store.processes()}
        assert {k: v for k, v in after_restart.items() if not k.startswith("run/")} == serving
        assert len(_events(store, "TrainingStarted")) == trained
        assert (model_dir / "model.onnx").stat().st_mtime_ns == stamp
        for name in ("iris-v1", "iris-v2", "iris-v3"):
            assert _status(store, "TrainingJob", name)["attempts"] == 1
        traffic.close()
        assert not traffic.errors, traffic.errors[:3]

        # --- SIGINT: every process is gone, by pid
        pids = [pid for pid, _ in serving.values()]
        os.kill(up.pid, signal.SIGINT)
        assert up.popen.wait(30) == 0
        # the finished training runs are not counted as processes to stop
        assert f"stopping {len(serving)} running process(es)" in up.log()
        assert f"stopped {len(serving)} process(es)" in up.log()
        still = [pid for pid, ticks in serving.values() if start_ticks(pid) == ticks]
        assert still == [], f"orphans: {still} of {pids}"
        # what ran is forgotten; the finished runs stay recorded, so that a run that ended
        # just before the stop is read by the next `pilotage up` instead of started again
        left = store.processes()
        assert sorted(r.key for r in left) == sorted(k for k in before if k.startswith("run/"))
        assert all(start_ticks(r.pid) != r.start_ticks for r in left)
    finally:
        if traffic is not None:
            traffic.close()
        up.stop()
