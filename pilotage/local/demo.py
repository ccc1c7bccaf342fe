"""`pilotage demo`: the whole lifecycle on the embedded runtime, with real processes and traffic.

The story (DESIGN §7): train v1 → deploy → train v2 → canary under traffic → an injected
latency breach rolls v2 back within one analysis interval → the live inputs shift →
the DriftMonitor sees drift and retrains on the live traffic the router logged, joined with
the ground truth the clients sent through /v1/feedback (a fresh snapshot of the logs
Dataset), measured against the stable version → the new version goes through the canary
steps and is promoted. Each step is checked; the exit status is non-zero
if any step did not behave.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pilotage.api import Resource, parse_resource
from pilotage.api.driftmonitor import drift_text
from pilotage.local.platform import LocalPlatform
from pilotage.local.processes import Supervisor
from pilotage.local.runtime import Runtime
from pilotage.local.store import NotFound, Store

MODEL = "iris"
LABEL = "pilotage.dev/model"
INTERVAL_S = 3.0  # analysis interval
P99_SLO_MS = 150.0
INJECTED_LATENCY_MS = 400.0
# Where the shifted traffic moves each iris feature (cm); the clients' ground truth (the
# class of the flower measured) does not move.
SHIFT = (1.2, 0.6, 1.8, 0.8)
FEEDBACK_BATCH = 20  # labels a client sends per POST /v1/feedback
# The served names (builtin columns made identifier-like by the trainer): what the model
# card and the drift report call them.
FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")


class StepFailed(Exception):
    pass


def _manifests(sink: str) -> dict[str, list[dict[str, Any]]]:
    api = "pilotage.dev/v1alpha1"
    canary = {
        "type": "Canary",
        "canary": {
            "steps": [
                {"setWeight": 25},
                {"pause": {"duration": "4s"}},
                {"setWeight": 50},
                {"pause": {"duration": "4s"}},
            ]
        },
    }

    def job(name: str, algorithm: str, hyper: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": api,
            "kind": "TrainingJob",
            "metadata": {"name": name, "labels": {LABEL: MODEL}},
            "spec": {
                "datasetRef": {"name": "iris"},
                "model": {"algorithm": algorithm, "hyperparameters": hyper},
                "evaluation": {"gates": [{"metric": "accuracy", "min": 0.85}]},
            },
        }

    base = [
        {
            "apiVersion": api,
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {"source": {"uri": "builtin://iris"}, "target": "target"},
        },
        job("iris-v1", "logistic_regression", {"C": 1.0, "max_iter": 500}),
        {
            "apiVersion": api,
            "kind": "ModelDeployment",
            "metadata": {"name": MODEL},
            "spec": {
                "model": {"trainingJobSelector": {"matchLabels": {LABEL: MODEL}}},
                "strategy": canary,
                "analysis": {
                    "interval": f"{INTERVAL_S:g}s",
                    "failureLimit": 0,
                    "minRequests": 10,
                    "latency": {"p99Ms": P99_SLO_MS},
                    "errorRate": {"max": 0.05},
                },
                "logging": {"sampleRate": 1.0, "sink": {"uri": sink}},
            },
        },
        {
            # The live traffic the router logs (wherever the deployment's sink is), joined
            # with the clients' labels: what a retrain learns from (profiled again, for a
            # fresh snapshot, before each one).
            "apiVersion": api,
            "kind": "Dataset",
            "metadata": {"name": "iris-live"},
            "spec": {
                "source": {
                    "uri": f"logs://{MODEL}",
                    "inferenceLogs": {"window": "1h", "labelled": True},
                },
                "target": "target",
            },
        },
        {
            "apiVersion": api,
            "kind": "DriftMonitor",
            "metadata": {"name": MODEL},
            "spec": {
                "deploymentRef": {"name": MODEL},
                "method": "psi",
                "threshold": 0.2,
                "driftShare": 0.5,
                "window": {"requests": 300},
                "interval": "2s",
                "minSamples": 120,
                "consecutive": 1,
                "onDrift": {
                    "rollback": True,
                    "cooldown": "10m",
                    "retrain": {
                        "template": {
                            "metadata": {"labels": {LABEL: MODEL, "pilotage.dev/trigger": "drift"}},
                            "spec": {
                                "datasetRef": {"name": "iris-live"},
                                "model": {
                                    "algorithm": "logistic_regression",
                                    "hyperparameters": {"C": 1.0, "max_iter": 500},
                                },
                                # The stable version is the bar the retrain must clear
                                # (champion and challenger); this floor is only a sanity check.
                                "evaluation": {"gates": [{"metric": "accuracy", "min": 0.8}]},
                            },
                        }
                    },
                },
            },
        },
    ]
    return {
        "base": base,
        "v2": [job("iris-v2", "random_forest", {"n_estimators": 30, "max_depth": 4})],
    }


def _iris_rows() -> tuple[list[list[float]], list[int]]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return [list(map(float, r)) for r in data.data], [int(t) for t in data.target]


@dataclass
class Traffic:
    """Clients sending single-row V1 predictions to the router, normal or shifted inputs,
    and, in batches, the ground truth of the shifted ones (POST /v1/feedback)."""

    endpoint: str
    threads: int = 3
    pause_s: float = 0.04
    shifted: bool = False
    sent: int = 0
    failed: int = 0
    labelled: int = 0
    by_variant: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        rows, targets = _iris_rows()
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, args=(rows, targets, i), daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=5)

    def reset_counts(self) -> None:
        with self._lock:
            self.by_variant.clear()

    def _feedback(self, conn: http.client.HTTPConnection, truth: list[dict[str, Any]]) -> None:
        body = json.dumps({"feedback": truth})
        try:
            conn.request("POST", "/v1/feedback", body, {"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                with self._lock:
                    self.labelled += len(truth)
        except (OSError, http.client.HTTPException):
            conn.close()

    def _loop(self, rows: list[list[float]], targets: list[int], seed: int) -> None:
        rng = random.Random(seed)
        host, port = self.endpoint.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        truth: list[dict[str, Any]] = []
        while not self._stop.is_set():
            k = rng.randrange(len(rows))
            row = rows[k]
            if self.shifted:
                row = [v + s for v, s in zip(row, SHIFT, strict=True)]
            row = [round(v + rng.gauss(0, 0.05), 3) for v in row]
            body = json.dumps({"instances": [row]})
            variant, reason = "", ""
            try:
                conn.request(
                    "POST",
                    f"/v1/models/{MODEL}:predict",
                    body,
                    {"content-type": "application/json"},
                )
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                reason = f"HTTP {resp.status}"
                variant = resp.getheader("x-pilotage-variant") or ""
                request_id = resp.getheader("x-pilotage-request-id")
                # Ground truth comes back for the new flowers only: labelled rows from both
                # ranges contradict each other (a shifted versicolor looks like a
                # virginica), and a retrain on that mix can lose to the stable version on
                # the same held-out rows, which the champion check then rightly refuses.
                if ok and request_id and self.shifted:
                    truth.append({"requestId": request_id, "label": targets[k]})
                if len(truth) >= FEEDBACK_BATCH:
                    self._feedback(conn, truth)
                    truth = []
            except (OSError, http.client.HTTPException) as exc:
                ok, reason = False, type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            with self._lock:
                self.sent += 1
                if not ok:
                    self.failed += 1
                    self.failures[reason] += 1
                if variant:
                    self.by_variant[variant] += 1
            self._stop.wait(self.pause_s)
        conn.close()


class Demo:
    def __init__(self, state_dir: Path, out: Callable[[str], None]) -> None:
        self.state_dir = state_dir
        self.say_raw = out
        self.store = Store(state_dir)
        self.platform = LocalPlatform(self.store, Supervisor(self.store))
        self.runtime = Runtime(self.store, self.platform)
        self.started = time.monotonic()
        self.results: list[tuple[str, bool, float, str]] = []
        self.traffic: Traffic | None = None
        self._loop_thread = threading.Thread(target=self.runtime.run, args=(0.2,), daemon=True)

    # -- helpers -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.say_raw(f"[{time.monotonic() - self.started:6.1f}s] {text}")

    def get(self, kind: str, name: str) -> dict[str, Any]:
        try:
            return self.store.get(kind, name).dump()
        except NotFound:
            return {}

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.get(kind, name).get("status") or {})

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        """Poll ``check`` until it returns something truthy; StepFailed after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}")

    def apply(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            res: Resource = parse_resource(doc)
            self.store.apply(res)

    def job_done(self, name: str) -> dict[str, Any] | None:
        st = self.status("TrainingJob", name)
        if st.get("phase") == "Failed":
            raise StepFailed(f"TrainingJob {name} failed: {st.get('message')}")
        return st if st.get("phase") == "Succeeded" else None

    def step(self, title: str, body: Callable[[], str]) -> bool:
        self.say_raw("")
        self.say(f"== {title}")
        t0 = time.monotonic()
        try:
            summary = body()
            ok = True
        except StepFailed as exc:
            summary, ok = str(exc), False
        took = time.monotonic() - t0
        self.results.append((title, ok, took, summary))
        self.say(("   ✓ " if ok else "   ✗ ") + summary)
        return ok

    # -- the story -----------------------------------------------------------------------

    def train_v1(self) -> str:
        self.apply(self.manifests["base"])
        self.say(
            "applied Dataset iris, TrainingJob iris-v1, ModelDeployment iris (logging every "
            "request), Dataset iris-live (logs://iris: the router's logs), DriftMonitor iris"
        )
        st = self.wait("iris-v1 to finish training", lambda: self.job_done("iris-v1"), 120)
        acc = st.get("metrics", {}).get("accuracy")
        parity = (st.get("onnxParity") or {}).get("maxAbsDiff")
        if not (st.get("gates") or {}).get("passed"):
            raise StepFailed(f"iris-v1 did not pass its gates: {st.get('message')}")
        return f"iris-v1 trained: accuracy {acc:.3f} on the test split, ONNX parity max |Δ| {parity:.1e}, gates passed"

    def deploy_v1(self) -> str:
        def healthy() -> dict[str, Any] | None:
            st = self.status("ModelDeployment", MODEL)
            stable = (st.get("stable") or {}).get("version")
            return (
                st
                if st.get("phase") == "Healthy" and stable == "iris-v1" and st.get("endpoint")
                else None
            )

        st = self.wait("ModelDeployment iris to be Healthy on iris-v1", healthy, 60)
        endpoint = st["endpoint"]
        self.traffic = Traffic(endpoint)
        self.traffic.start()
        self.wait(
            "the first answers",
            lambda: self.traffic and self.traffic.sent - self.traffic.failed > 20,
            20,
        )
        return (
            f"iris-v1 serves at {endpoint} (traffic: {st.get('trafficSummary')}); clients send "
            f"~{self._rate():.0f} req/s (the ground truth of new flowers comes back through "
            "/v1/feedback)"
        )

    def _rate(self) -> float:
        assert self.traffic is not None
        before = self.traffic.sent
        time.sleep(1.0)
        return float(self.traffic.sent - before)

    def train_v2(self) -> str:
        self.apply(self.manifests["v2"])
        self.say(
            "applied TrainingJob iris-v2 (random forest, same label: the deployment's selector picks it up)"
        )
        st = self.wait("iris-v2 to finish training", lambda: self.job_done("iris-v2"), 120)
        return f"iris-v2 trained: accuracy {st.get('metrics', {}).get('accuracy', float('nan')):.3f}, gates passed"

    def canary_v2(self) -> str:
        def canary_live() -> dict[str, Any] | None:
            st = self.status("ModelDeployment", MODEL)
            cand = (st.get("candidate") or {}).get("version")
            weight = (st.get("traffic") or {}).get("canary", 0)
            return st if cand == "iris-v2" and weight > 0 else None

        st = self.wait("iris-v2 to receive canary traffic", canary_live, 60)
        assert self.traffic is not None
        self.traffic.reset_counts()
        time.sleep(2.0)
        seen = dict(self.traffic.by_variant)
        total = sum(seen.values()) or 1
        share = 100.0 * seen.get("canary", 0) / total
        return (
            f"canary started: weights {st.get('trafficSummary')}; measured split over 2 s: "
            f"{seen.get('stable', 0)} stable / {seen.get('canary', 0)} canary ({share:.0f} % canary)"
        )

    def latency_breach(self) -> str:
        n = self.platform.inject_faults(MODEL, "iris-v2", latency_ms=INJECTED_LATENCY_MS)
        t0 = time.monotonic()
        self.say(
            f"injected {INJECTED_LATENCY_MS:.0f} ms of latency into {n} iris-v2 server(s) (SLO p99 ≤ {P99_SLO_MS:.0f} ms)"
        )

        def rolled_back() -> dict[str, Any] | None:
            st = self.status("ModelDeployment", MODEL)
            history = st.get("history") or []
            done = (
                history
                and history[-1].get("action") == "RolledBack"
                and history[-1].get("version") == "iris-v2"
            )
            return st if done and not st.get("candidate") else None

        st = self.wait("the automatic rollback of iris-v2", rolled_back, 30)
        took = time.monotonic() - t0
        analysis = st.get("lastAnalysis") or {}
        p99 = analysis.get("p99Ms")
        figure = (
            f"measured p99 {p99:.0f} ms vs SLO {P99_SLO_MS:.0f} ms"
            if isinstance(p99, int | float)
            else analysis.get("message", "")
        )
        # "within one analysis interval": the first analysis ending after the injection decides;
        # allow the loop's tick and a router read on top of the interval.
        if took > INTERVAL_S + 1.5:
            raise StepFailed(
                f"rollback took {took:.1f}s, more than one analysis interval ({INTERVAL_S:g}s)"
            )
        return (
            f"rolled back {took:.1f}s after the injection (interval {INTERVAL_S:g}s): {figure}; "
            f"phase {st.get('phase')}, traffic {st.get('trafficSummary')}"
        )

    def drift(self) -> str:
        assert self.traffic is not None
        self.traffic.shifted = True
        self.say(
            "clients now send shifted inputs: "
            + ", ".join(f"{f} +{s}" for f, s in zip(FEATURES, SHIFT, strict=True))
        )

        def drifting() -> dict[str, Any] | None:
            st = self.status("DriftMonitor", MODEL)
            return st if st.get("phase") == "Drifting" else None

        st = self.wait("the DriftMonitor to report drift", drifting, 60)
        features = [f for f in st.get("features") or [] if f.get("drifted")]
        shown = ", ".join(
            drift_text(f["name"], f["method"], f["score"], f.get("pValue"), f["threshold"])
            for f in features[:4]
        )
        retrain = self.wait(
            "the retraining TrainingJob (after a fresh snapshot of the logs)",
            lambda: self.status("DriftMonitor", MODEL).get("lastRetrain"),
            60,
        )
        self.retrain_name = str(retrain["name"])
        return (
            f"drift on {len(features)}/{len(st.get('features') or [])} features over {st.get('samples')} requests "
            f"(threshold 0.2): {shown}; created TrainingJob {self.retrain_name}"
        )

    def retrain(self) -> str:
        st = self.wait(
            f"{self.retrain_name} to finish training", lambda: self.job_done(self.retrain_name), 120
        )
        snapshot = st.get("datasetSnapshot") or {}
        if not snapshot.get("labelledRows"):
            raise StepFailed(f"{self.retrain_name} did not learn from a snapshot of the logs")
        champion = st.get("champion") or {}
        if not (st.get("gates") or {}).get("passed"):
            raise StepFailed(f"{self.retrain_name} was not deployable: {st.get('message')}")
        accuracy = st.get("metrics", {}).get("accuracy", float("nan"))
        theirs = (champion.get("metrics") or {}).get("accuracy", float("nan"))
        return (
            f"{self.retrain_name} learned from {snapshot['labelledRows']} labelled requests of "
            f"live traffic (of {snapshot.get('requests')} logged, {snapshot.get('labels')} labels "
            f"sent through /v1/feedback): accuracy {accuracy:.3f} vs the stable "
            f"{champion.get('version')}'s {theirs:.3f} on the same held-out rows, gates passed"
        )

    def promotion(self) -> str:
        version = str(
            self.status("TrainingJob", self.retrain_name).get("modelVersion") or self.retrain_name
        )
        steps: list[str] = []
        weights: list[int] = []  # the candidate's share at each step it went through

        def promoted() -> dict[str, Any] | None:
            st = self.status("ModelDeployment", MODEL)
            summary = st.get("trafficSummary") or ""
            if (
                (st.get("candidate") or {}).get("version") == version
                and summary
                and (not steps or steps[-1] != summary)
            ):
                steps.append(summary)
                self.say(f"   traffic {summary} ({st.get('phase')})")
                weight = (st.get("traffic") or {}).get("canary")
                if isinstance(weight, int) and weight > 0 and weight not in weights:
                    weights.append(weight)
            if (
                st.get("phase") == "Degraded"
                and (st.get("history") or [{}])[-1].get("version") == version
            ):
                raise StepFailed(f"{version} was rolled back: {st.get('message')}")
            stable = (st.get("stable") or {}).get("version")
            return st if stable == version and st.get("phase") == "Healthy" else None

        st = self.wait(f"{version} to be promoted", promoted, 90)
        analysis = st.get("lastAnalysis") or {}
        p99 = analysis.get("p99Ms")
        figure = f", last analysis p99 {p99:.1f} ms" if isinstance(p99, int | float) else ""
        path = " → ".join(str(w) for w in [*weights, 100])
        return f"{version} promoted through {path} % of the traffic ({st.get('trafficSummary')}){figure}"

    # -- running it ------------------------------------------------------------------------

    def play(self) -> bool:
        self.manifests = _manifests((self.state_dir / "inference-logs").resolve().as_uri())
        self.retrain_name = ""
        self._loop_thread.start()
        story = [
            ("Train v1", self.train_v1),
            ("Deploy v1 behind the router", self.deploy_v1),
            ("Train v2", self.train_v2),
            ("Canary v2 under traffic", self.canary_v2),
            ("Latency breach → automatic rollback", self.latency_breach),
            ("Input shift → drift → retrain", self.drift),
            ("Retrain on the labelled live traffic", self.retrain),
            ("Canary of the retrained version → promotion", self.promotion),
        ]
        for title, body in story:
            if not self.step(title, body):
                break
        return all(ok for _, ok, _, _ in self.results) and len(self.results) == len(story)

    def close(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        self.runtime.stop_event.set()
        self._loop_thread.join(timeout=10) if self._loop_thread.is_alive() else None
        self.platform.stop_everything()

    def report(self, ok: bool) -> None:
        self.say_raw("")
        self.say_raw("Summary")
        for title, passed, took, _ in self.results:
            self.say_raw(f"  {'✓' if passed else '✗'} {title:<48} {took:5.1f}s")
        if self.traffic is not None:
            why = ", ".join(f"{n}x {r}" for r, n in self.traffic.failures.most_common())
            self.say_raw(
                f"  requests sent: {self.traffic.sent}, failed: {self.traffic.failed}"
                + (f" ({why})" if why else "")
                + f"; labels sent: {self.traffic.labelled}"
            )
        total = time.monotonic() - self.started
        self.say_raw(
            f"  {'every step behaved' if ok else 'SOME STEP DID NOT BEHAVE'} — {total:.0f}s in all"
        )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pilotage demo",
        description="Play the whole lifecycle on the embedded runtime with real processes and traffic.",
    )
    p.add_argument(
        "--state-dir", help="keep the state here (default: a temporary directory, removed after)"
    )
    args = p.parse_args(argv)
    temporary = args.state_dir is None
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="pilotage-demo-"))

    def out(line: str) -> None:
        print(line, flush=True)

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    demo = Demo(state_dir, out)
    ok = False
    try:
        out(f"pilotage demo: state in {state_dir}")
        ok = demo.play()
    except KeyboardInterrupt:
        out("interrupted")
    finally:
        demo.close()
        demo.report(ok)
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
