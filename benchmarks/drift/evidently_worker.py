"""Runs Evidently drift checks on request; lives in Evidently's own virtualenv.

Started by compare_evidently.py with the paths of the reference and current
arrays (.npy, float64, one column per feature). Reads one command a line from
stdin, "<method> <threshold>", answers one JSON line: seconds for the check
(wall and CPU; Dataset wrapping + Report.run with per-column tests) and each column's score
and verdict as Evidently decides them (its ValueDrift test FAILs on drift).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    reference_path, current_path = sys.argv[1], sys.argv[2]
    reference_array = np.load(reference_path)
    names = [f"f{i:02d}" for i in range(reference_array.shape[1])]
    reference = pd.DataFrame(reference_array, columns=names)
    current = pd.DataFrame(np.load(current_path), columns=names)
    definition = DataDefinition(numerical_columns=names)
    print(json.dumps({"ready": True, "evidently": __import__("evidently").__version__}), flush=True)
    for line in sys.stdin:
        method, threshold = line.split()
        started, cpu_started = time.perf_counter(), time.process_time()
        report = Report(
            [DataDriftPreset(method=method, threshold=float(threshold))], include_tests=True
        )
        snapshot = report.run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        result = snapshot.dict()
        scores = {
            m["config"]["column"]: float(m["value"])
            for m in result["metrics"]
            if m["config"]["type"].endswith("ValueDrift")
        }
        verdicts = {
            t["metric_config"]["params"]["column"]: str(t["status"]).endswith("FAIL")
            for t in result["tests"]
            if t["metric_config"]["params"]["type"].endswith("ValueDrift")
        }
        columns = {n: {"score": scores[n], "drifted": verdicts[n]} for n in names}
        print(
            json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "columns": columns}),
            flush=True,
        )


if __name__ == "__main__":
    main()
