"""Peak memory of `pilotage profile` on a large CSV (docs/performance.md, "Profiling").

    .venv/bin/python benchmarks/profiling/profile_memory.py --mb 500 --csv /tmp/big.csv

Writes a CSV of at least ``--mb`` megabytes (8 normal float columns and a 3-class integer
target, about 170 bytes a row) unless it exists, then runs ``pilotage profile`` on it in
a child process and prints the rows, the wall time and the child's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST = """\
apiVersion: pilotage.dev/v1alpha1
kind: Dataset
metadata: {{name: big}}
spec:
  source: {{uri: "{uri}"}}
  target: y
"""


def write_csv(path: Path, megabytes: int) -> None:
    rng = np.random.default_rng(0)
    first = True
    with path.open("w") as f:
        while f.tell() < megabytes * 1_000_000:
            frame = pd.DataFrame(rng.normal(size=(100_000, 8)), columns=[f"x{i}" for i in range(8)])
            frame["y"] = rng.integers(0, 3, len(frame))
            frame.to_csv(f, index=False, header=first)
            first = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="size of the CSV in MB")
    parser.add_argument("--csv", type=Path, default=Path("/tmp/pilotage-profile-bench.csv"))
    args = parser.parse_args()
    if not args.csv.exists() or args.csv.stat().st_size < args.mb * 1_000_000:
        write_csv(args.csv, args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "dataset.yaml"
        manifest.write_text(MANIFEST.format(uri=args.csv.resolve().as_uri()))
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pilotage", "profile", "-f", str(manifest)],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - started
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"{args.csv.stat().st_size / 1e6:.0f} MB, {summary['rows']} rows: "
        f"phase {summary['phase']}, {elapsed:.1f} s, peak RSS {peak_mb:.0f} MB"
    )
    return 0 if summary["phase"] == "Ready" else 1


if __name__ == "__main__":
    sys.exit(main())
