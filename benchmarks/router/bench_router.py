"""Router overhead: direct calls vs `pilotage route` (canary, shadow) vs nginx, side by side.

    .venv/bin/python -m benchmarks.router.bench_router [--rounds 3] [--duration 5]
        [--model-uri DIR]   # real `pilotage serve` upstreams (default: the stand-in server)

Needs `wrk` and `nginx` on PATH (Debian: apt-get install wrk nginx-light). Every
process is pinned: the proxy under test (router or nginx) on CPU 0, the upstreams and
wrk on the other CPUs, so the proxy's CPU time per request is read cleanly from
/proc. Targets are interleaved in every round; medians over rounds are reported.

Targets (all 90/10 between a "stable" and a "canary" upstream, except direct):
  direct         wrk -> stable upstream
  router         wrk -> pilotage route (canary mode, 90/10)
  router+shadow  wrk -> pilotage route (shadow mode: stable answers, every request copied)
  router+slow-shadow  the same with a shadow answering in 500 ms (copies queue, then drop)
  nginx          wrk -> nginx 1 worker, weighted upstreams 90/10, keepalive pool
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pilotage.router.table import write_table_file
from tests.support.procs import Process, free_port, http_ok, pilotage, wait_until

BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
PATH = "/v1/models/iris:predict"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            pids += process_tree(int(child))
    return pids


def pinned(cpus: str, args: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *args]


def parse_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str, connections: int, duration: float, script: Path, cpus: str
) -> dict[str, float]:
    out = subprocess.run(
        pinned(
            cpus,
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration:g}s",
                "--latency",
                "-s",
                str(script),
                url + PATH,
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latencies = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return {
        "requests": requests,
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
        "rps": requests / duration,
        "p50_ms": parse_ms(latencies["50"]),
        "p99_ms": parse_ms(latencies["99"]),
    }


def nginx_conf(tmp: Path, port: int, stable: int, canary: int) -> Path:
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream models {{
        server 127.0.0.1:{stable} weight=90;
        server 127.0.0.1:{canary} weight=10;
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://models;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )
    return conf


def start_upstream(
    tmp: Path, cpus: str, version: str, model_uri: str | None, delay_ms: float = 0.0
) -> tuple[Process, int]:
    port = free_port()
    if model_uri:
        args = pilotage("serve", "--model-uri", model_uri, "--port", str(port), "--name", "iris")
        if delay_ms:
            args += ["--enable-fault-injection", "--inject-latency-ms", str(delay_ms)]
    else:
        args = [
            sys.executable,
            "-m",
            "tests.router.standin",
            "--port",
            str(port),
            "--version",
            version,
        ]
    proc = Process(pinned(cpus, args), tmp / f"upstream-{port}.log")
    proc.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 60)
    if delay_ms and not model_uri:
        change = json.dumps({"delay": delay_ms / 1000}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/control", change, method="POST")
        urllib.request.urlopen(request, timeout=5).close()
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument(
        "--model-uri", help="serve this model with `pilotage serve` instead of the stand-in"
    )
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool):
            print(
                f"bench_router: {tool} not found (apt-get install wrk nginx-light util-linux)",
                file=sys.stderr,
            )
            return 2
    ncpu = os.cpu_count() or 2
    proxy_cpu, other_cpus = "0", f"1-{ncpu - 1}" if ncpu > 2 else "1"
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    procs: list[Process] = []
    try:
        stable, stable_port = start_upstream(tmp, other_cpus, "1", args.model_uri)
        canary, canary_port = start_upstream(tmp, other_cpus, "2", args.model_uri)
        shadow, shadow_port = start_upstream(tmp, other_cpus, "3", args.model_uri)
        slow, slow_port = start_upstream(tmp, other_cpus, "4", args.model_uri, delay_ms=500)
        procs += [stable, canary, shadow, slow]

        def variant(name: str, port: int, weight: int) -> dict[str, Any]:
            return {
                "name": name,
                "url": f"http://127.0.0.1:{port}",
                "weight": weight,
                "version": name,
            }

        targets: dict[str, tuple[str, list[int]]] = {
            "direct": (f"http://127.0.0.1:{stable_port}", []),
        }
        for name, doc in (
            ("router", {"deployment": "iris", "mode": "canary",
                        "variants": [variant("stable", stable_port, 90), variant("canary", canary_port, 10)]}),
            ("router+shadow", {"deployment": "iris", "mode": "shadow",
                               "variants": [variant("stable", stable_port, 100), variant("shadow", shadow_port, 0)],
                               "shadow": {"variant": "shadow", "percent": 100}}),
            ("router+slow-shadow", {"deployment": "iris", "mode": "shadow",
                                    "variants": [variant("stable", stable_port, 100), variant("shadow", slow_port, 0)],
                                    "shadow": {"variant": "shadow", "percent": 100}}),
        ):  # fmt: skip
            port = free_port()
            config = tmp / f"{name}.json"
            write_table_file(config, doc)
            router = Process(
                pinned(
                    proxy_cpu,
                    pilotage(
                        "route",
                        "--config",
                        str(config),
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                    ),
                ),
                tmp / f"{name}.log",
            )
            procs.append(router)
            router.wait_http(f"http://127.0.0.1:{port}/pilotage/healthz", 30)
            targets[name] = (f"http://127.0.0.1:{port}", [router.pid])

        nginx_port = free_port()
        conf = nginx_conf(tmp, nginx_port, stable_port, canary_port)
        nginx = Process(
            pinned(proxy_cpu, ["nginx", "-c", str(conf), "-p", str(tmp)]), tmp / "nginx.log"
        )
        procs.append(nginx)
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{nginx_port}/v2/health/ready"), 10, what="nginx"
        )
        targets["nginx"] = (f"http://127.0.0.1:{nginx_port}", process_tree(nginx.pid))

        script = tmp / "post.lua"
        script.write_text(
            f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n"
        )
        for url, _ in targets.values():  # warm-up: connections, caches, lazy imports
            run_wrk(url, 8, 1.0, script, other_cpus)

        results: dict[str, dict[int, list[dict[str, float]]]] = {
            t: {c: [] for c in concurrencies} for t in targets
        }
        for rnd in range(args.rounds):
            for c in concurrencies:
                for name, (url, pids) in targets.items():
                    before = cpu_seconds(pids) if pids else 0.0
                    run = run_wrk(url, c, args.duration, script, other_cpus)
                    if pids:
                        run["cpu_us_per_req"] = (
                            (cpu_seconds(pids) - before) / max(run["requests"], 1) * 1e6
                        )
                    results[name][c].append(run)
                    print(f"round {rnd + 1} c={c:<3} {name:<18} {run['rps']:8.0f} req/s  p50 {run['p50_ms']:.3f} ms  "
                          f"p99 {run['p99_ms']:.3f} ms  cpu {run.get('cpu_us_per_req', 0):.0f} us/req  errors {run['errors']}",
                          flush=True)  # fmt: skip
            time.sleep(0.5)
    finally:
        for proc in reversed(procs):
            proc.stop()

    def med(name: str, c: int, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in results[name][c])

    print()
    print(f"machine: {platform.node()}, {ncpu} CPUs ({platform.processor() or platform.machine()}), "
          f"Python {platform.python_version()}; proxy pinned to CPU {proxy_cpu}, wrk + upstreams on {other_cpus}; "
          f"upstream: {'pilotage serve ' + args.model_uri if args.model_uri else 'stand-in (tests/router/standin.py)'}; "
          f"medians of {args.rounds} rounds x {args.duration:g} s")  # fmt: skip
    print()
    print(
        "| concurrency | target | req/s | p50 ms | p99 ms | proxy CPU µs/req | added p50 ms | CPU vs nginx |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in concurrencies:
        for name in targets:
            cpu = med(name, c, "cpu_us_per_req") if name != "direct" else None
            added = (
                med(name, c, "p50_ms") - med("direct", c, "p50_ms") if name != "direct" else None
            )
            ratio = (
                cpu / med("nginx", c, "cpu_us_per_req")
                if cpu is not None and med("nginx", c, "cpu_us_per_req")
                else None
            )
            print(f"| {c} | {name} | {med(name, c, 'rps'):.0f} | {med(name, c, 'p50_ms'):.3f} | {med(name, c, 'p99_ms'):.3f} | "
                  f"{'' if cpu is None else f'{cpu:.0f}'} | {'' if added is None else f'{added:+.3f}'} | "
                  f"{'' if ratio is None else f'{ratio:.2f}x'} |")  # fmt: skip
    for c in concurrencies:
        extra = med("router+shadow", c, "cpu_us_per_req") - med("router", c, "cpu_us_per_req")
        slow = med("router+slow-shadow", c, "cpu_us_per_req") - med("router", c, "cpu_us_per_req")
        print(f"shadow copy at c={c}: {extra:+.0f} µs CPU per request vs router without shadow "
              f"(slow shadow: {slow:+.0f} µs)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
