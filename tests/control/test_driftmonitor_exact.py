"""DriftMonitor exact tests: the card's training sample against the servers' reservoirs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from pilotage.api.driftmonitor import DriftMonitor
from pilotage.api.modelcard import (
    Baseline,
    BaselineSample,
    CategoricalProfile,
    ModelCard,
    NumericProfile,
)
from pilotage.control import reconcile_driftmonitor
from pilotage.control.observe import server_counters
from pilotage.control.types import DriftMonitorObservation, RecentRows, ServerCounters
from pilotage.server.drift import DriftCounter
from pilotage.server.engine import Prediction
from pilotage.server.responses import dumps
from pilotage.server.rows import RowSchema
from tests.control.factories import at, deployment

EDGES = [1.0, 2.0, 3.0]
Row = list[Any]


def uniform(n: int, seed: int) -> list[Row]:
    """a, b uniform on [0, 4): a quarter in each bin; c alternates x, y."""
    values = np.random.default_rng(seed).uniform(0.0, 4.0, size=(n, 2))
    return [[float(a), float(b), "xy"[i % 2]] for i, (a, b) in enumerate(values)]


def squeezed(n: int, seed: int) -> list[Row]:
    """The same bin shares, but every value in the top fifth of its bin: the bins
    cannot see the change, the exact tests can."""

    def up(x: float) -> float:
        return float(np.floor(x) + 0.8 + 0.2 * (x - np.floor(x)))

    return [[up(a), up(b), c] for a, b, c in uniform(n, seed)]


def baseline(sample: bool = True) -> Baseline:
    reference = uniform(400, seed=1)
    return Baseline(
        rows=1000,
        features={
            "a": NumericProfile(edges=EDGES, proportions=[0.25] * 4, std=1.1547),
            "b": NumericProfile(edges=EDGES, proportions=[0.25] * 4, std=1.1547),
            "c": CategoricalProfile(categories=["x", "y"], proportions=[0.5, 0.5, 0.0]),
        },
        predictions=CategoricalProfile(categories=["0", "1"], proportions=[0.5, 0.5, 0.0]),
        sample=BaselineSample(columns=["a", "b", "c"], rows=reference) if sample else None,
    )


class Replica:
    """One server process: cumulative bin counts and a ring of its recent rows."""

    def __init__(self, name: str = "pod-1", capacity: int = 1000) -> None:
        self.name, self.capacity = name, capacity
        self.bins: dict[str, dict[str, int]] = {
            "a": {str(i): 0 for i in range(4)} | {"null": 0},
            "b": {str(i): 0 for i in range(4)} | {"null": 0},
            "c": {"x": 0, "y": 0, "__other__": 0, "null": 0},
        }
        self.recent: list[Row] = []
        self.rows = 0

    def send(self, rows: list[Row]) -> None:
        for a, b, c in rows:
            self.bins["a"][str(int(np.searchsorted(EDGES, a, side="right")))] += 1
            self.bins["b"][str(int(np.searchsorted(EDGES, b, side="right")))] += 1
            self.bins["c"][c] += 1
        self.recent = (self.recent + rows)[-self.capacity :]
        self.rows += len(rows)

    def counters(self, reservoir: bool = True) -> ServerCounters:
        return ServerCounters(
            features={f: dict(b) for f, b in self.bins.items()},
            predictions={"0": self.rows // 2, "1": self.rows - self.rows // 2},
            rows=self.rows,
            replica=self.name,
            reservoir=RecentRows(("a", "b", "c"), tuple(tuple(r) for r in self.recent))
            if reservoir
            else None,
        )


def monitor(method: str = "ks", **spec: Any) -> DriftMonitor:
    return DriftMonitor.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": "iris-dm", "generation": 1},
            "spec": {
                "deploymentRef": {"name": "iris"},
                "window": {"requests": 200},
                "minSamples": 100,
                "method": method,
                **spec,
            },
        }
    )


def observe(*counters: ServerCounters, card: Baseline | None = None) -> DriftMonitorObservation:
    return DriftMonitorObservation(
        deployment=deployment(),
        version="v1",
        baseline=card if card is not None else baseline(),
        counters=counters,
    )


def check(
    dm: DriftMonitor, first: DriftMonitorObservation, second: DriftMonitorObservation
) -> DriftMonitor:
    """Checkpoint on `first`, judge the window up to `second`."""
    status = reconcile_driftmonitor(dm, first, at(0)).status
    dm = dm.model_copy(update={"status": status})
    return dm.model_copy(update={"status": reconcile_driftmonitor(dm, second, at(60)).status})


def judged(dm: DriftMonitor) -> dict[str, tuple[str, bool]]:
    assert dm.status is not None
    return {f.name: (f.method, f.drifted) for f in dm.status.features}


def test_shift_inside_the_bins_is_seen_by_exact_ks_only() -> None:
    replica = Replica()
    before = replica.counters()
    replica.send(squeezed(300, seed=2))

    bins_only = check(monitor("ks"), observe(before), observe(replica.counters(reservoir=False)))
    assert bins_only.status is not None and bins_only.status.phase == "Healthy"
    assert judged(bins_only) == {"a": ("ks", False), "b": ("ks", False), "c": ("chi2", False)}
    # Only sampling noise on the bins; the exact D is the in-bin shift (a fifth of each bin).
    assert all(f.score < 0.1 for f in bins_only.status.features if f.name != "c")
    assert "exactly" not in bins_only.status.message

    exact = check(monitor("ks"), observe(before), observe(replica.counters()))
    assert exact.status is not None and exact.status.phase == "Drifting"
    assert judged(exact) == {"a": ("ks", True), "b": ("ks", True), "c": ("chi2", False)}
    assert exact.status.samples == 300
    assert all(f.score > 0.15 for f in exact.status.features if f.name != "c")
    assert exact.status.message.endswith("; 2 features tested exactly on 300 recent rows")


@pytest.mark.parametrize(
    ("method", "phase", "used"),
    [
        ("wasserstein", "Drifting", "wasserstein"),
        ("auto", "Drifting", "ks"),
        ("psi", "Healthy", "psi"),
        ("js", "Healthy", "js"),
    ],
)
def test_only_ks_wasserstein_and_auto_use_the_samples(method: str, phase: str, used: str) -> None:
    replica = Replica()
    before = replica.counters()
    replica.send(squeezed(300, seed=3))
    dm = check(monitor(method), observe(before), observe(replica.counters()))
    assert dm.status is not None and dm.status.phase == phase
    assert judged(dm)["a"][0] == used
    assert ("exactly" in dm.status.message) == (phase == "Drifting")


def test_unchanged_traffic_passes_the_exact_tests() -> None:
    replica = Replica()
    before = replica.counters()
    replica.send(uniform(300, seed=4))
    dm = check(monitor("ks"), observe(before), observe(replica.counters()))
    assert dm.status is not None and dm.status.phase == "Healthy"
    assert "2 features tested exactly on 300 recent rows" in dm.status.message


def test_bins_when_the_reservoir_is_short_or_the_card_has_no_sample() -> None:
    small = Replica(capacity=50)  # fewer recent rows than minSamples
    before = small.counters()
    small.send(squeezed(300, seed=5))
    dm = check(monitor("ks"), observe(before), observe(small.counters()))
    assert dm.status is not None and dm.status.phase == "Healthy"
    assert "exactly" not in dm.status.message

    replica = Replica()
    before = replica.counters()
    replica.send(squeezed(300, seed=5))
    old_card = baseline(sample=False)
    dm = check(
        monitor("ks"),
        observe(before, card=old_card),
        observe(replica.counters(), card=old_card),
    )
    assert dm.status is not None and dm.status.phase == "Healthy"


def test_only_the_windows_rows_of_the_reservoir_are_tested() -> None:
    """Rows that arrived before the checkpoint are still in the reservoir but belong to
    an earlier window; testing them again would flag this healthy window."""
    replica = Replica()
    replica.send(squeezed(300, seed=6))
    before = replica.counters()
    replica.send(uniform(300, seed=7))
    dm = check(monitor("ks"), observe(before), observe(replica.counters()))
    assert dm.status is not None and dm.status.phase == "Healthy"
    assert "tested exactly on 300 recent rows" in dm.status.message

    # The same reservoir tested whole would have drifted.
    whole = Replica()
    blank = whole.counters()
    whole.send(squeezed(300, seed=6))
    whole.send(uniform(300, seed=7))
    dm = check(monitor("ks"), observe(blank), observe(whole.counters()))
    assert dm.status is not None and dm.status.phase == "Drifting"


def test_replicas_pool_their_recent_rows() -> None:
    one, two, three = Replica("pod-1"), Replica("pod-2"), Replica("pod-3")
    before = (one.counters(), two.counters(), three.counters())
    one.send(squeezed(150, seed=8))
    two.send(squeezed(150, seed=9))
    three.send(squeezed(150, seed=10))
    after = (one.counters(), two.counters(), three.counters(reservoir=False))
    dm = check(monitor("ks"), observe(*before), observe(*after))
    assert dm.status is not None and dm.status.phase == "Drifting"
    assert dm.status.samples == 450  # the window counts every replica's bins
    assert "tested exactly on 300 recent rows" in dm.status.message


def _card() -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "toy",
            "version": "v1",
            "task": "classification",
            "algorithm": "logistic_regression",
            "features": [
                {"name": "a", "type": "float"},
                {"name": "b", "type": "float"},
                {"name": "c", "type": "category", "categories": ["x", "y"]},
            ],
            "target": "t",
            "classes": [0, 1],
            "dataset": {"name": "toy", "uri": "file:///toy.csv", "fingerprint": "f", "rows": 1},
            "created": "2026-01-01T00:00:00Z",
            "onnx": {
                "sha256": "0" * 64,
                "opset": 17,
                "inputLayout": "columns",
                "inputs": [],
                "outputs": [],
                "labelOutput": "label",
            },
            "baseline": baseline().model_dump(by_alias=True),
        }
    )


def test_the_servers_drift_document_feeds_the_exact_tests() -> None:
    card = _card()
    schema = RowSchema(card)
    counter = DriftCounter(card, schema, reservoir_size=1000)

    def serve(rows: list[Row]) -> None:
        labels = np.zeros(len(rows), dtype=np.int64)
        counter.observe(schema.rows_from_lists(rows, "instance"), Prediction(labels, None))

    def read(replica: str) -> ServerCounters:
        doc = json.loads(dumps(counter.snapshot("toy", "v1").to_doc()))
        return server_counters(doc, replica)

    before = read("pod-1@1")
    serve([[None, 0.5, None], *squeezed(299, seed=11)])
    after = read("pod-1@1")
    assert after.rows == 300 and after.features["c"]["null"] == 1
    assert after.predictions == {"0": 300, "1": 0}
    assert after.reservoir is not None and after.reservoir.columns == ("a", "b", "c")
    assert after.reservoir.rows[0] == (None, 0.5, None) and len(after.reservoir.rows) == 300
    dm = check(
        monitor("ks"), observe(before, card=card.baseline), observe(after, card=card.baseline)
    )
    assert dm.status is not None and dm.status.phase == "Drifting"
    assert "2 features tested exactly on 300 recent rows" in dm.status.message


def test_malformed_drift_documents_give_empty_counters() -> None:
    counters = server_counters(
        {
            "rows": "many",
            "features": {"a": {"0": 3, "1": "x"}, "b": []},
            "predictions": [],
            "reservoir": {"columns": ["a", "b"], "rows": [[1, 2], [3], "row", [True, {}]]},
        },
        "pod",
    )
    assert counters.rows == 0
    assert counters.features == {"a": {"0": 3, "1": 0}, "b": {}}
    assert counters.predictions == {}
    assert counters.reservoir == RecentRows(("a", "b"), ((1.0, 2.0), (None, None)))
    assert server_counters({}, "pod") == ServerCounters({}, {}, 0, "pod", None)
