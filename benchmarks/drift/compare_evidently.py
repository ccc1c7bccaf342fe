"""Pilotage's drift check vs Evidently's, side by side on the same data, in one run.

25 numeric columns, 1,000,000 reference rows x 100,000 current rows, graded shifts
(some columns unchanged, some barely moved, some clearly moved). For each test
(wasserstein, ks, psi, with Evidently's default thresholds on both sides) and each
round, Evidently runs one check (Report with DataDriftPreset, in its own
virtualenv) and then Pilotage runs the same test three ways, on the baseline profile the
trainer writes (``pilotage.drift.baseline``, the production binning):

* counters: ``evaluate()`` on the window counts, which is what the DriftMonitor
  does (the server counted the rows into the baseline bins as they were served);
* raw: counting the 100k current rows into the bins with the server's counters
  (``count_window``), then ``evaluate()``;
* exact (ks, wasserstein): ``evaluate()`` with the full samples as the reservoir.

It prints, per test, the median time per check and the ratio to Evidently, and
per mode how many columns get the same verdict as Evidently (listing any that do
not). Run: benchmarks/drift/run.sh [--rounds N] [--bins B]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pilotage.api.modelcard import Baseline, NumericProfile
from pilotage.drift import Reservoir, count_window, evaluate, numeric_profile

HERE = Path(__file__).resolve().parent
EVIDENTLY_PYTHON = HERE / ".venv-evidently" / "bin" / "python"
REFERENCE_ROWS = 1_000_000
CURRENT_ROWS = 100_000
# (distribution, shift of the mean in reference standard deviations, scale factor)
COLUMNS: list[tuple[str, float, float]] = [
    ("normal", 0.0, 1.0),
    ("lognormal", 0.0, 1.0),
    ("uniform", 0.0, 1.0),
    ("exponential", 0.0, 1.0),
    ("bimodal", 0.0, 1.0),
    ("normal", 0.005, 1.0),
    ("lognormal", 0.01, 1.0),
    ("uniform", 0.02, 1.0),
    ("exponential", 0.03, 1.0),
    ("normal", 0.05, 1.0),
    ("bimodal", 0.07, 1.0),
    ("normal", 0.0, 1.05),
    ("lognormal", 0.15, 1.0),
    ("uniform", 0.2, 1.0),
    ("normal", 0.25, 1.0),
    ("exponential", 0.4, 1.0),
    ("bimodal", 0.5, 1.0),
    ("normal", 0.0, 1.5),
    ("lognormal", 0.7, 1.0),
    ("normal", 1.0, 1.0),
    ("uniform", 0.0, 0.5),
    ("normal", 0.6, 1.2),
    ("exponential", 1.5, 1.0),
    ("bimodal", 0.0, 1.3),
    ("normal", 2.0, 1.0),
]
THRESHOLDS = {"wasserstein": 0.1, "ks": 0.05, "psi": 0.1}  # Evidently's defaults


def draw(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(50.0, 10.0, n)
    if kind == "lognormal":
        return rng.lognormal(1.0, 0.6, n)
    if kind == "uniform":
        return rng.uniform(-3.0, 7.0, n)
    if kind == "exponential":
        return rng.exponential(2.0, n)
    return np.where(rng.random(n) < 0.4, rng.normal(-2.0, 0.7, n), rng.normal(3.0, 1.2, n))


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = np.empty((REFERENCE_ROWS, len(COLUMNS)))
    current = np.empty((CURRENT_ROWS, len(COLUMNS)))
    for j, (kind, shift, scale) in enumerate(COLUMNS):
        reference[:, j] = draw(kind, rng, REFERENCE_ROWS)
        mean, std = reference[:, j].mean(), reference[:, j].std()
        fresh = draw(kind, rng, CURRENT_ROWS)
        current[:, j] = mean + (fresh - mean) * scale + shift * std
    return reference, current


class Evidently:
    """The worker process in Evidently's virtualenv, holding the data frames."""

    def __init__(self, reference_path: Path, current_path: Path) -> None:
        self.process = subprocess.Popen(
            [
                str(EVIDENTLY_PYTHON),
                str(HERE / "evidently_worker.py"),
                str(reference_path),
                str(current_path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.version = self._answer()["evidently"]

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the Evidently worker exited; see its error above")
        return json.loads(line)  # type: ignore[no-any-return]

    def check(self, method: str, threshold: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{method} {threshold}\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process, result."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - started, time.process_time() - cpu_started, result


def _seconds(value: float) -> str:
    return f"{value * 1e3:.3f} ms" if value < 1 else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--bins", type=int, default=10, help="quantile bins per feature (trainer default 10)"
    )
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--tests", default="wasserstein,ks,psi")
    args = parser.parse_args(argv)
    tests = args.tests.split(",")
    names = [f"f{j:02d}" for j in range(len(COLUMNS))]

    print(
        f"data: {len(COLUMNS)} numeric columns, {REFERENCE_ROWS:,} reference x {CURRENT_ROWS:,} current rows",
        flush=True,
    )
    reference, current = make_data(args.seed)
    ref_cols = {n: np.ascontiguousarray(reference[:, j]) for j, n in enumerate(names)}
    cur_cols = {n: np.ascontiguousarray(current[:, j]) for j, n in enumerate(names)}
    build_seconds, _, profiles = timed(
        lambda: {n: numeric_profile(v, args.bins) for n, v in ref_cols.items()}
    )
    baseline = Baseline(
        rows=REFERENCE_ROWS,
        features=profiles,
        predictions=NumericProfile(edges=[0.0], proportions=[0.5, 0.5]),
    )
    window = count_window(baseline, cur_cols)
    reservoir = Reservoir(reference=ref_cols, current=cur_cols)
    print(
        f"baseline profile ({args.bins} quantile bins), built once at training time: {build_seconds:.2f} s",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "reference.npy", reference)
        np.save(Path(tmp) / "current.npy", current)
        evidently = Evidently(Path(tmp) / "reference.npy", Path(tmp) / "current.npy")
        print(f"evidently {evidently.version}; {args.rounds} rounds, interleaved", flush=True)
        times: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        verdicts: dict[tuple[str, str], dict[str, tuple[bool, float]]] = {}
        for round_number in range(args.rounds):
            for test in tests:
                threshold = THRESHOLDS[test]
                answer = evidently.check(test, threshold)
                times.setdefault((test, "evidently"), []).append(answer["seconds"])
                cpu.setdefault((test, "evidently"), []).append(answer["cpu_seconds"])
                verdicts[(test, "evidently")] = {
                    n: (c["drifted"], c["score"]) for n, c in answer["columns"].items()
                }
                modes: dict[str, Callable[[], Any]] = {
                    "counters": lambda m=test, t=threshold: evaluate(
                        baseline, window, method=m, threshold=t
                    ),
                    "raw": lambda m=test, t=threshold: evaluate(
                        baseline, count_window(baseline, cur_cols), method=m, threshold=t
                    ),
                }
                if test in ("ks", "wasserstein"):
                    modes["exact"] = lambda m=test, t=threshold: evaluate(
                        baseline, window, method=m, threshold=t, reservoir=reservoir
                    )
                for mode, run in modes.items():
                    seconds, cpu_seconds, report = timed(run)
                    times.setdefault((test, mode), []).append(seconds)
                    cpu.setdefault((test, mode), []).append(cpu_seconds)
                    verdicts[(test, mode)] = {
                        f.name: (f.drifted, f.p_value if f.p_value is not None else f.score)
                        for f in report.features
                    }
                print(
                    f"  round {round_number + 1} {test}: evidently {answer['seconds']:.2f} s",
                    flush=True,
                )
        evidently.close()

    print()
    print(
        "| test | check | median wall time per check | Evidently / this (wall) "
        "| median CPU time | Evidently / this (CPU) | same verdicts as Evidently |"
    )
    print("|---|---|---|---|---|---|---|")
    for test in tests:
        base = statistics.median(times[(test, "evidently")])
        base_cpu = statistics.median(cpu[(test, "evidently")])
        theirs = verdicts[(test, "evidently")]
        for mode in ("evidently", "counters", "raw", "exact"):
            if (test, mode) not in times:
                continue
            median = statistics.median(times[(test, mode)])
            ours = verdicts[(test, mode)]
            same = sum(ours[n][0] == theirs[n][0] for n in names)
            median_cpu = statistics.median(cpu[(test, mode)])
            print(
                f"| {test} | {mode} | {_seconds(median)} | {base / median:,.0f}x "
                f"| {_seconds(median_cpu)} | {base_cpu / max(median_cpu, 1e-6):,.0f}x "
                f"| {same}/{len(names)} |"
            )
    print()
    for test in tests:
        theirs = verdicts[(test, "evidently")]
        drifted = sum(v[0] for v in theirs.values())
        print(f"{test}: Evidently flags {drifted}/{len(names)} columns")
        for mode in ("counters", "exact"):
            if (test, mode) not in verdicts:
                continue
            ours = verdicts[(test, mode)]
            for n in names:
                if ours[n][0] != theirs[n][0]:
                    kind, shift, scale = COLUMNS[names.index(n)]
                    print(
                        f"  differs ({mode}) {n} {kind} shift={shift} scale={scale}: "
                        f"evidently {theirs[n][1]:.4g} drifted={theirs[n][0]}, "
                        f"pilotage {ours[n][1]:.4g} drifted={ours[n][0]}"
                    )
            worst = max(abs(ours[n][1] - theirs[n][1]) for n in names)
            print(f"  {mode}: largest score difference {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
