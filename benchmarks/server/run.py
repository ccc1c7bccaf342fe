"""Side-by-side serving benchmark: pilotage vs a naive FastAPI server vs MLServer.

One run, one machine, the same models: each server pinned to one core (taskset), wrk
pinned to another, single-row V2 JSON requests over keep-alive connections at
concurrency 1, 8 and 64; servers interleaved within each concurrency level. Also the
bare in-process onnxruntime call (the limit). Reports req/s, p50/p99 latency and the
server's CPU time per request (all its processes), and the ratios to the naive server.

    .venv/bin/python -m benchmarks.server.run            # full run (~8 minutes)
    .venv/bin/python -m benchmarks.server.run --quick    # short windows, for a smoke test

MLServer needs its own environment: see setup_mlserver.sh; without it MLServer is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort

from tests.server.artifacts import Artifact, build_breast_cancer_forest, build_iris
from tests.support.procs import Process, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"
MLSERVER = HERE / ".venv-mlserver" / "bin" / "mlserver"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Measurement:
    model: str
    server: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    errors: int


@dataclass
class Target:
    name: str
    url: str  # infer endpoint
    process: Process


def pinned(core: int, args: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *args]


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp), counted after the ")"
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def start_targets(
    model: str, artifact: Artifact, core: int, work: Path, wanted: set[str]
) -> list[Target]:
    py = sys.executable
    targets: list[Target] = []
    inherited = os.environ.get("PYTHONPATH")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), *([inherited] if inherited else [])])}

    def add(
        name: str, args: list[str], url: str, ready: str, extra_env: dict[str, str] | None = None
    ) -> None:
        if name not in wanted:
            return
        proc = Process(
            pinned(core, args), work / f"{model}-{name}.log", {**env, **(extra_env or {})}
        )
        proc.wait_http(ready, timeout=120)
        targets.append(Target(name, url, proc))

    batch = ["--max-batch-size", "64", "--max-batch-wait-us", "500"]
    for name, extra in (
        ("pilotage", []),
        ("pilotage-batch", batch),
        ("pilotage-thread", ["--inference-thread"]),
        ("pilotage-batch-thread", [*batch, "--inference-thread"]),
    ):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        add(
            name,
            [
                py,
                "-m",
                "pilotage",
                "serve",
                "--model-uri",
                artifact.uri,
                "--port",
                str(port),
                *extra,
            ],
            f"{base}/v2/models/{model}/infer",
            f"{base}/v2/health/ready",
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    add(
        "naive",
        [py, str(HERE / "naive_server.py"), str(artifact.directory), str(port)],
        f"{base}/v2/models/{model}/infer",
        f"{base}/docs",
    )
    if MLSERVER.exists():
        folder = work / f"mlserver-{model}"
        folder.mkdir(exist_ok=True)
        joblib.dump(artifact.estimator, folder / "model.joblib")
        port = free_port()
        (folder / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": port,
                    "grpc_port": free_port(),
                    "metrics_port": free_port(),
                    "debug": False,
                }
            )
        )
        (folder / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": model,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "v1"},
                }
            )
        )
        base = f"http://127.0.0.1:{port}"
        add(
            "mlserver",
            [str(MLSERVER), "start", str(folder)],
            f"{base}/v2/models/{model}/infer",
            f"{base}/v2/models/{model}/ready",
        )
    return targets  # fmt: skip


def body_for(artifact: Artifact) -> bytes:
    row = artifact.frame.to_numpy(dtype=np.float32)[len(artifact.frame) // 2]
    tensor = {"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def wrk_script(body: bytes, path: Path) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{body.decode()}]]\n"
    )
    return path


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> tuple[float, float, float, int, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return rps, pct("50"), pct("99"), total, errors


def measure(
    target: Target, script: Path, concurrency: int, seconds: float, warmup: float, core: int
) -> Measurement:
    wrk = ["wrk", "-t1", f"-c{concurrency}", "--latency", "-s", str(script), target.url]
    subprocess.run(
        pinned(core, [*wrk[:3], f"-d{round(warmup)}s", *wrk[3:]]), capture_output=True, check=True
    )
    cpu_before = group_cpu_seconds(target.process.pid)
    done = subprocess.run(
        pinned(core, [*wrk[:3], f"-d{round(seconds)}s", *wrk[3:]]),
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = group_cpu_seconds(target.process.pid) - cpu_before
    rps, p50, p99, total, errors = parse_wrk(done.stdout)
    model = target.url.split("/v2/models/")[1].split("/")[0]
    return Measurement(
        model, target.name, concurrency, rps, p50, p99, 1e6 * cpu / max(total, 1), errors
    )


def in_process(artifact: Artifact, core: int, seconds: float) -> Measurement:
    """The bare onnxruntime call on one row, pinned to the server core: the ceiling."""
    os.sched_setaffinity(0, {core})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(artifact.directory / "model.onnx"), options)
    x = artifact.frame.to_numpy(dtype=np.float32)[:1]
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(200):
        session.run(None, feeds)
    times = []
    deadline = time.perf_counter() + seconds
    cpu0 = time.process_time()
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    times_ms = np.array(times) * 1e3
    return Measurement(
        artifact.card.name, "onnxruntime in-process", 1, len(times) / sum(times),
        float(np.percentile(times_ms, 50)), float(np.percentile(times_ms, 99)),
        1e6 * cpu / len(times), 0,
    )  # fmt: skip


def table(results: list[Measurement]) -> str:
    naive = {(m.model, m.concurrency): m for m in results if m.server == "naive"}
    lines = [
        "| model | server | conc. | req/s | x naive | p50 ms | p99 ms | p99/p50 | CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        base = naive.get((m.model, m.concurrency))
        ratio = f"{m.rps / base.rps:.2f}" if base else "-"
        lines.append(
            f"| {m.model} | {m.server} | {m.concurrency} | {m.rps:,.0f} | {ratio} | {m.p50_ms:.3f} | "
            f"{m.p99_ms:.3f} | {m.p99_ms / m.p50_ms:.1f} | {m.cpu_us_per_request:,.0f} | {m.errors} |"
        )
    return "\n".join(lines)


def median_of(runs: list[Measurement]) -> Measurement:
    first = runs[0]
    return Measurement(
        first.model, first.server, first.concurrency,
        statistics.median(r.rps for r in runs), statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        statistics.median(r.cpu_us_per_request for r in runs), sum(r.errors for r in runs),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=10.0, help="measured window per point")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=1, help="rounds; the table shows medians")
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--models", default="iris,breast_cancer")
    p.add_argument(
        "--servers",
        default="pilotage,pilotage-batch,naive,mlserver",
        help="also: pilotage-thread, pilotage-batch-thread (onnxruntime on a worker thread)",
    )
    p.add_argument("--server-core", type=int, default=1)
    p.add_argument("--load-core", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 s windows, 1 s warm-up")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = 2.0, 1.0
    RESULTS.mkdir(parents=True, exist_ok=True)
    builders = {"iris": build_iris, "breast_cancer": build_breast_cancer_forest}
    levels = [int(c) for c in args.concurrency.split(",")]
    results: list[Measurement] = []
    for model in args.models.split(","):
        artifact = builders[model](RESULTS / "models" / model)
        print(
            f"== {model}: starting servers on core {args.server_core}", file=sys.stderr, flush=True
        )
        targets = start_targets(
            model, artifact, args.server_core, RESULTS, set(args.servers.split(","))
        )
        script = wrk_script(body_for(artifact), RESULTS / f"post-{model}.lua")
        try:
            for target in targets:  # every server answers the same body with 200 first
                out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-d",
                                      body_for(artifact).decode(), "-H", "Content-Type: application/json",
                                      target.url], capture_output=True, text=True, check=False)  # fmt: skip
                if out.stdout != "200":
                    raise SystemExit(f"{target.name} answered {out.stdout} to the benchmark body")
            runs: dict[tuple[str, int], list[Measurement]] = {}
            for round_ in range(args.repeats):
                for c in levels:
                    order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
                    for target in order:
                        m = measure(target, script, c, args.seconds, args.warmup, args.load_core)
                        print(f"   {target.name:21} c={c:<3} {m.rps:9,.0f} req/s  p50 {m.p50_ms:.3f} ms"
                              f"  p99 {m.p99_ms:.3f} ms  {m.cpu_us_per_request:,.0f} µs CPU/req",
                              file=sys.stderr, flush=True)  # fmt: skip
                        runs.setdefault((target.name, c), []).append(m)
            results += [median_of(r) for r in runs.values()]
        finally:
            for target in targets:
                target.process.stop()
        results.append(in_process(artifact, args.server_core, args.seconds / 2))
    results.sort(key=lambda m: (m.model, m.concurrency, m.server))
    print(table(results))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"server-{stamp}.json").write_text(
        json.dumps([asdict(m) for m in results], indent=2)
    )
    print(f"\nraw results: {RESULTS / f'server-{stamp}.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
