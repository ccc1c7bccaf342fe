"""Autoscaling benchmark: cold start from zero, a 10x load step, and the warm path.

Runs the embedded runtime (the same code as `pilotage up`) in this process with real
`pilotage serve` and `pilotage route` processes on 127.0.0.1, for two models trained
here: iris logistic regression and a breast-cancer random forest (100 trees).

* cold start: the deployment (minReplicas 0) goes to zero; one request is sent; the
  time to its answer is the cold start (the router holds it, the control plane is woken
  through the router's long poll, a server process starts, becomes ready and is put in
  the routing table). Repeated ``--cold`` times per model.
* load step: 1 client for a few seconds, then 10; reports when the autoscaler decided
  to scale up, when the new replicas were ready and routed to, and the latency before
  and after. Run for the two models as they are (CPU-bound: more replicas help only
  where there are idle cores) and for iris with a fixed capacity per replica (the
  server's ``serialLatencyMs`` fault, 20 ms a request), where more replicas must help
  on any machine.
* warm path: sequential requests through the router of a deployment with autoscaling
  and of one without, interleaved: the autoscaled warm path must cost nothing extra.

    .venv/bin/python -m benchmarks.autoscale.bench_autoscale [--cold 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pilotage.api import ModelDeployment, parse_resource
from pilotage.local.runtime import Runtime
from pilotage.local.store import Store
from tests.router.traffic import Client, Traffic
from tests.support.control_plane import control_plane
from tests.support.models import build_model
from tests.support.procs import wait_until

MODELS: dict[str, tuple[str, str, dict[str, Any], list[list[float]]]] = {
    "iris": ("iris", "logistic_regression", {}, [[5.1, 3.5, 1.4, 0.2]]),
    "forest": ("breast_cancer", "random_forest", {"n_estimators": 100}, [[14.0] * 30]),
}


def deployment(name: str, model: Path, autoscaling: dict[str, Any] | None) -> ModelDeployment:
    spec: dict[str, Any] = {"model": {"uri": model.as_uri()}}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    res = parse_resource(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": spec,
        },
        name,
    )
    assert isinstance(res, ModelDeployment)
    return res


def status(store: Store, name: str) -> Any:
    return store.get("ModelDeployment", name).status  # type: ignore[attr-defined]


def running(runtime: Runtime, name: str) -> int:
    sup = runtime.platform.supervisor
    return sum(1 for r in runtime.platform.server_records(name) if sup.running(r))


def routed(runtime: Runtime, name: str) -> int:
    admin = runtime.platform.router_admin(name)
    if admin is None:
        return 0
    client = Client(admin[0])
    try:
        answer = client.request(
            "GET", "/admin/stats", headers={"authorization": f"Bearer {admin[1]}"}
        )
    finally:
        client.close()
    return int(json.loads(answer.body)["variants"]["stable"]["replicas"])


def healthy(store: Store, name: str) -> bool:
    st = status(store, name)
    return st is not None and st.phase == "Healthy" and bool(st.endpoint)


def cold_starts(work: Path, label: str, rounds: int) -> dict[str, Any]:
    dataset, algorithm, params, row = MODELS[label]
    model = build_model(work / f"model-{label}", dataset=dataset, algorithm=algorithm, **params)
    name = f"{label}-cold"
    seconds: list[float] = []
    held: list[float] = []
    with control_plane(work / f"state-{label}-cold") as (store, runtime):
        store.create(
            deployment(
                name,
                model,
                {
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "interval": "500ms",
                    "window": "4s",
                    "panicWindow": "1s",
                    "scaleDownDelay": "1s",
                    "scaleToZeroAfter": "2s",
                    "activationTimeout": "60s",
                },
            )
        )
        wait_until(lambda: healthy(store, name), timeout=120, what="Healthy")
        endpoint = status(store, name).endpoint
        for _ in range(rounds):
            wait_until(
                lambda: (
                    running(runtime, name) == 0
                    and status(store, name).replicas_summary == "stable 0/0"
                ),
                timeout=120,
                what="zero replicas",
            )
            client = Client(endpoint, timeout=120)
            started = time.perf_counter()
            answer = client.predict(row, model=name)
            seconds.append(time.perf_counter() - started)
            client.close()
            assert answer.status == 200, answer.body
            admin = runtime.platform.router_admin(name)
            assert admin is not None
            c = Client(admin[0])
            stats = json.loads(
                c.request(
                    "GET", "/admin/stats", headers={"authorization": f"Bearer {admin[1]}"}
                ).body
            )
            c.close()
            held.append(float(stats["variants"]["stable"]["activation"]["lastColdStartSeconds"]))
    return {
        "model": label,
        "rounds": rounds,
        "cold_start_s": seconds,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "router_held_median_s": statistics.median(held),
    }


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def load_step(work: Path, label: str, slot_ms: float = 0.0) -> dict[str, Any]:
    dataset, algorithm, params, row = MODELS[label]
    model = build_model(
        work / f"model-{label}-{slot_ms:.0f}-step", dataset=dataset, algorithm=algorithm, **params
    )
    rows = row * 50  # 50 rows per request: each request is real work
    name = "iris"  # the model name in the request path (tests.router.traffic's clients)
    with control_plane(work / f"state-{label}-{slot_ms:.0f}-step") as (store, runtime):
        store.create(
            deployment(
                name,
                model,
                {
                    "minReplicas": 1,
                    "maxReplicas": 8,
                    "target": {"inFlight": 2},
                    "interval": "500ms",
                    "window": "10s",
                    "panicWindow": "2s",
                    "scaleDownDelay": "60s",
                },
            )
        )
        wait_until(lambda: healthy(store, name), timeout=120, what="Healthy")
        endpoint = status(store, name).endpoint
        version = status(store, name).stable.version

        stop_slowing = threading.Event()

        def slow_replicas() -> None:
            # every replica the autoscaler starts gets the same fixed capacity within
            # 50 ms of starting (the fault is set through each server's /admin/faults)
            while slot_ms and not stop_slowing.wait(0.05):
                with contextlib.suppress(OSError):
                    runtime.platform.inject_faults(name, version, serial_latency_ms=slot_ms)

        slower = threading.Thread(target=slow_replicas, daemon=True)
        slower.start()

        def model_rows(i: int) -> list[list[float]]:
            return rows

        with Traffic(endpoint, threads=1, rows=model_rows) as one:
            time.sleep(4)  # measuring period: one client
        before = [a.seconds for a in one.all()]
        step = time.monotonic()
        decided = ready_at = None
        with Traffic(endpoint, threads=10, rows=model_rows) as ten:
            while time.monotonic() - step < 30:
                st = status(store, name)
                if decided is None and st.replicas["stable"].desired > 1:
                    decided = time.monotonic() - step
                if decided is not None and routed(runtime, name) >= st.replicas["stable"].desired:
                    ready_at = time.monotonic() - step
                    break
                time.sleep(0.05)
            settled = ten.mark()
            time.sleep(4)  # measuring period after the scale-up
            after = [a.seconds for a in ten.since(settled)]
            during = [a.seconds for a in ten.before(settled)]
        stop_slowing.set()
        slower.join()
        final = status(store, name).replicas["stable"]
        return {
            "model": label if not slot_ms else f"{label}, {slot_ms:.0f} ms slot",
            "replicas_after": final.desired,
            "decided_after_s": decided,
            "ready_and_routed_after_s": ready_at,
            "one_client": {"p50_ms": p(before, 50) * 1e3, "p99_ms": p(before, 99) * 1e3},
            "ten_clients_before_absorbed": {
                "p50_ms": p(during, 50) * 1e3 if during else None,
                "p99_ms": p(during, 99) * 1e3 if during else None,
            },
            "ten_clients_after": {"p50_ms": p(after, 50) * 1e3, "p99_ms": p(after, 99) * 1e3},
            "failures": len(ten.failures) + len(one.failures),
            "answers": len(ten.all()) + len(one.all()),
        }


def warm_path(work: Path, requests: int) -> dict[str, Any]:
    dataset, algorithm, params, row = MODELS["iris"]
    model = build_model(work / "model-warm", dataset=dataset, algorithm=algorithm, **params)
    with control_plane(work / "state-warm") as (store, _):
        store.create(deployment("fixed", model, None))
        store.create(deployment("scaled", model, {"minReplicas": 1, "maxReplicas": 1}))
        wait_until(
            lambda: healthy(store, "fixed") and healthy(store, "scaled"),
            timeout=120,
            what="both Healthy",
        )
        clients = {n: Client(status(store, n).endpoint) for n in ("fixed", "scaled")}
        times: dict[str, list[float]] = {"fixed": [], "scaled": []}
        for i in range(requests):
            for name in ("fixed", "scaled") if i % 2 else ("scaled", "fixed"):
                answer = clients[name].predict(row, model=name)
                assert answer.status == 200
                times[name].append(answer.seconds)
        for c in clients.values():
            c.close()
    return {
        name: {"p50_ms": p(t, 50) * 1e3, "p99_ms": p(t, 99) * 1e3, "n": len(t)}
        for name, t in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=int, default=5, help="cold starts per model (default 5)")
    ap.add_argument("--warm", type=int, default=2000, help="warm requests per deployment")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument(
        "--only", choices=["cold", "step", "warm"], action="append", help="run only these"
    )
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pilotage-bench-autoscale-") as tmp:
        work = Path(tmp)
        parts = set(args.only or ["cold", "step", "warm"])
        results["cold_start"] = [cold_starts(work, m, args.cold) for m in MODELS if "cold" in parts]
        for r in results["cold_start"]:
            print(
                f"cold start {r['model']}: median {r['median_s']:.2f}s "
                f"(min {r['min_s']:.2f}, max {r['max_s']:.2f}, {r['rounds']} rounds; "
                f"router held median {r['router_held_median_s']:.2f}s)",
                flush=True,
            )
        steps = [(m, 0.0) for m in MODELS] + [("iris", 20.0)]
        results["load_step"] = [load_step(work, m, slot) for m, slot in steps if "step" in parts]
        for r in results["load_step"]:
            print(f"load step {r['model']}: {json.dumps(r)}", flush=True)
        if "warm" in parts:
            results["warm_path"] = warm_path(work, args.warm)
            print(f"warm path: {json.dumps(results['warm_path'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
