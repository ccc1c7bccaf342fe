"""Inference logging's cost in the router: logging off vs `sampleRate: 1.0` to a file sink,
side by side in one run.

    .venv/bin/python -m benchmarks.router.bench_logging [--rounds 5] [--duration 5]
        [--concurrency 1,8] [--model-uri DIR]   # real `pilotage serve` upstream

Two `pilotage route` processes in front of the same upstream (the stand-in server by
default): one without logging, one logging every request to a file sink. Both routers
are pinned to CPU 0 (when `taskset` exists), the upstream and the client to the others,
so each router's CPU time per request is read cleanly from /proc (all its threads,
the writer thread included). The client is Python (http.client, one keep-alive
connection per thread), so it needs no wrk. Targets alternate within every round;
medians over rounds are reported, and the logged records are counted at the end.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pilotage.inferencelog.config import parse_logging
from pilotage.inferencelog.reader import LogReader
from pilotage.inferencelog.record import Exchange, encode, request_record
from pilotage.inferencelog.writer import InferenceLogger
from pilotage.router.table import write_table_file
from tests.support.procs import Process, free_port, pilotage

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
PATH = "/v1/models/iris:predict"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def pinned(cpus: str | None, args: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *args] if cpus else args


def load(port: int, concurrency: int, duration: float) -> tuple[int, int, list[float]]:
    """(answered, failed, latencies in ms) of `concurrency` keep-alive clients."""
    stop = time.monotonic() + duration
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failed = [0] * concurrency

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json"}
        mine = latencies[k]
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request("POST", PATH, BODY, headers)
            resp = conn.getresponse()
            resp.read()
            mine.append((time.perf_counter() - started) * 1000)
            if resp.status != 200:
                failed[k] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = [x for part in latencies for x in part]
    return len(merged), sum(failed), merged


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def per_record_breakdown(n: int = 20_000) -> dict[str, float]:
    """µs of CPU per record for the pieces, measured in this process (best of 3): the
    event loop's share (sample + Exchange + offer) and the writer thread's (record
    building + JSON encoding); the file write is not in it."""
    names = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    answer = b'{"predictions":[0],"probabilities":[[0.98,0.02,0.0]]}'
    config = parse_logging({"sampleRate": 1.0, "sink": {"uri": "file:///unused"},
                            "bufferRecords": n + 1, "bufferBytes": 1 << 30})  # fmt: skip

    def hot() -> None:
        logger = InferenceLogger(config, "iris", lambda *_: names)
        rid = b"5f0c2d8e4a7b41c9a3e2f1d0c9b8a7e6"
        for _ in range(n):
            if logger.sample():
                logger.offer(
                    Exchange(time.time(), rid, "stable", "1", "http://u", PATH, BODY, 200,
                             answer, 0.001, None, False),
                    len(BODY) + len(answer),
                )  # fmt: skip

    sample = Exchange(time.time(), b"5f0c2d8e", "stable", "1", "http://u", PATH, BODY, 200,
                      answer, 0.001, None, False)  # fmt: skip

    def writer() -> None:
        for _ in range(n):
            encode((request_record(sample, "default", "iris", lambda *_: names, frozenset()),))

    out = {}
    for name, fn in (("event loop", hot), ("writer", writer)):
        best = min(_cpu_of(fn) for _ in range(3))
        out[name] = best / n * 1e6
    return out


def _loads_us(n: int = 100_000) -> float:
    import orjson

    started = time.thread_time()
    for _ in range(n):
        orjson.loads(BODY)
    return (time.thread_time() - started) / n * 1e6


def _cpu_of(fn: Any) -> float:
    started = time.thread_time()
    fn()
    return time.thread_time() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--model-uri", help="serve this model with `pilotage serve`")
    args = ap.parse_args()
    ncpu = os.cpu_count() or 2
    taskset = shutil.which("taskset") is not None and ncpu >= 2
    router_cpu = "0" if taskset else None
    other_cpus = (f"1-{ncpu - 1}" if ncpu > 2 else "1") if taskset else None
    if taskset:
        os.sched_setaffinity(0, {int(c) for c in range(1, ncpu)})  # the client
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-logging-"))
    logs = tmp / "logs"
    procs: list[Process] = []
    try:
        up_port = free_port()
        if args.model_uri:
            up_args = pilotage("serve", "--model-uri", args.model_uri, "--port", str(up_port),
                               "--name", "iris")  # fmt: skip
        else:
            up_args = [sys.executable, "-m", "tests.router.standin", "--port", str(up_port)]
        upstream = Process(pinned(other_cpus, up_args), tmp / "upstream.log")
        procs.append(upstream)
        upstream.wait_http(f"http://127.0.0.1:{up_port}/v2/health/ready", 60)
        base = {
            "deployment": "iris",
            "mode": "canary",
            "variants": [
                {"name": "stable", "url": f"http://127.0.0.1:{up_port}", "weight": 100,
                 "version": "1"}
            ],
        }  # fmt: skip
        targets: dict[str, tuple[int, int]] = {}
        for name, doc in (
            ("logging off", base),
            ("sampleRate 1.0, file", {**base, "logging": {"sampleRate": 1.0,
                                                          "sink": {"uri": logs.as_uri()}}}),
        ):  # fmt: skip
            port = free_port()
            config = tmp / f"{port}.json"
            write_table_file(config, doc)
            router = Process(
                pinned(router_cpu, pilotage("route", "--config", str(config), "--port",
                                            str(port), "--log-level", "warning")),
                tmp / f"router-{port}.log",
            )  # fmt: skip
            procs.append(router)
            router.wait_http(f"http://127.0.0.1:{port}/pilotage/healthz", 30)
            targets[name] = (port, router.pid)

        sent_to_logger = 0
        for name, (port, _) in targets.items():  # warm-up: connections, imports, metadata
            answered, _, _ = load(port, 2, 1.0)
            if "sampleRate" in name:
                sent_to_logger += answered
        results: dict[str, dict[int, list[dict[str, float]]]] = {
            t: {c: [] for c in concurrencies} for t in targets
        }
        for rnd in range(args.rounds):
            for c in concurrencies:
                order = list(targets.items())
                if rnd % 2:
                    order.reverse()
                for name, (port, pid) in order:
                    before = cpu_seconds(pid)
                    answered, failed, latencies = load(port, c, args.duration)
                    time.sleep(1.2)  # the writer's last batch of this run is in the CPU count
                    cpu = (cpu_seconds(pid) - before) / max(answered, 1) * 1e6
                    if "sampleRate" in name:
                        sent_to_logger += answered
                    run = {
                        "rps": answered / args.duration,
                        "p50_ms": percentile(latencies, 0.5),
                        "p99_ms": percentile(latencies, 0.99),
                        "cpu_us_per_req": cpu,
                        "failed": failed,
                    }
                    results[name][c].append(run)
                    print(f"round {rnd + 1} c={c:<2} {name:<22} {run['rps']:7.0f} req/s  "
                          f"p50 {run['p50_ms']:.3f} ms  p99 {run['p99_ms']:.3f} ms  "
                          f"cpu {cpu:.1f} us/req  failed {failed}", flush=True)  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()

    end = datetime.now(UTC) + timedelta(minutes=1)
    reader = LogReader(logs.as_uri(), "default", "iris", end - timedelta(hours=2), end)
    logged = sum(1 for _ in reader)

    def med(name: str, c: int, key: str) -> float:
        return statistics.median(r[key] for r in results[name][c])

    print()
    print(f"machine: {platform.node()}, {ncpu} CPUs ({platform.processor() or platform.machine()}), "
          f"Python {platform.python_version()}; routers pinned to CPU {router_cpu or '(not pinned)'}, "
          f"client + upstream on {other_cpus or '(not pinned)'}; upstream: "
          f"{'pilotage serve ' + args.model_uri if args.model_uri else 'stand-in'}; "
          f"medians of {args.rounds} rounds x {args.duration:g} s")  # fmt: skip
    print()
    print("| concurrency | router | req/s | p50 ms | p99 ms | router CPU µs/req |")
    print("|---|---|---|---|---|---|")
    for c in concurrencies:
        for name in targets:
            print(f"| {c} | {name} | {med(name, c, 'rps'):.0f} | {med(name, c, 'p50_ms'):.3f} | "
                  f"{med(name, c, 'p99_ms'):.3f} | {med(name, c, 'cpu_us_per_req'):.1f} |")  # fmt: skip
    off, on = targets
    for c in concurrencies:
        extra = med(on, c, "cpu_us_per_req") - med(off, c, "cpu_us_per_req")
        p50 = med(on, c, "p50_ms") - med(off, c, "p50_ms")
        spread = [r["p50_ms"] for r in results[off][c]]
        cpus = [r["cpu_us_per_req"] for r in results[off][c]]
        print(f"c={c}: logging adds {extra:+.1f} µs CPU per request, p50 {p50 * 1000:+.0f} µs "
              f"(without logging, p50 spans {min(spread):.3f}-{max(spread):.3f} ms and CPU "
              f"{min(cpus):.0f}-{max(cpus):.0f} µs/req across rounds)")  # fmt: skip
    print(
        f"records logged: {logged} of {sent_to_logger} requests the logging router answered "
        f"(torn lines: {reader.stats.torn})"
    )
    parts = per_record_breakdown()
    print(
        "per logged request, in-process thread CPU: "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in parts.items())
        + f" (file write not included); orjson.loads of the request body: {_loads_us():.2f} µs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
