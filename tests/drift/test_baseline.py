"""One binning: the trainer's profiles and the server's counters bin the same data alike.

The model card's bins are written by the trainer (``numeric_profile``,
``categorical_profile``) and counted by the model server (``DriftCounter``); both come
from ``pilotage.drift.baseline`` (tests/test_boundaries.py checks that no other module
bins). Counting the very training rows through the server must give back the card's
proportions exactly, edge values included.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris

from pilotage.api.modelcard import Baseline, CategoricalProfile, ModelCard, NumericProfile
from pilotage.drift import count_window
from pilotage.drift.baseline import (
    NumericBins,
    as_served,
    categorical_profile,
    count_numeric,
    numeric_profile,
    profile_edges,
)
from pilotage.server.drift import DriftCounter
from pilotage.server.engine import Prediction
from pilotage.server.responses import dumps
from pilotage.server.rows import RowSchema
from pilotage.wire.drift_counts import DriftCounts


def _card(features: list[dict[str, Any]], baseline: Baseline) -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "iris",
            "version": "v1",
            "task": "classification",
            "algorithm": "logistic_regression",
            "features": features,
            "target": "t",
            "classes": [0, 1, 2],
            "dataset": {"name": "iris", "uri": "builtin://iris", "fingerprint": "f", "rows": 150},
            "created": "2026-01-01T00:00:00Z",
            "onnx": {
                "sha256": "0" * 64,
                "opset": 17,
                "inputLayout": "columns",
                "inputs": [],
                "outputs": [],
                "labelOutput": "label",
            },
            "baseline": baseline.model_dump(by_alias=True),
        }
    )


@pytest.fixture(scope="module")
def iris() -> tuple[list[str], np.ndarray, list[str]]:
    data = load_iris()
    names = [n.replace(" (cm)", "").replace(" ", "_") for n in data.feature_names]
    species = [str(data.target_names[t]) for t in data.target]
    return names, data.data, species


def test_the_servers_counts_of_the_training_rows_are_the_profiles_proportions(iris) -> None:  # type: ignore[no-untyped-def]
    names, x, species = iris
    profiles: dict[str, NumericProfile | CategoricalProfile] = {
        n: numeric_profile(x[:, j]) for j, n in enumerate(names)
    }
    profiles["species"] = categorical_profile(species)
    # Iris is measured to 0.1 cm: deciles land on data values, and those values (read as
    # float32, as JSON numbers reach the server) sit exactly on an edge.
    on_edges = sum(
        int(np.isin(as_served(x[:, j]), profiles[n].edges).sum())  # type: ignore[union-attr]
        for j, n in enumerate(names)
    )
    assert on_edges > 20
    features = [{"name": n, "type": "float"} for n in names]
    features.append({"name": "species", "type": "category", "categories": sorted(set(species))})
    card = _card(
        features, Baseline(rows=len(x), features=profiles, predictions=profiles["species"])
    )
    schema = RowSchema(card)
    counter = DriftCounter(card, schema, reservoir_size=0)
    # JSON rows as a client sends them: Python floats (float64), a category string.
    rows = [[*map(float, row), s] for row, s in zip(x, species, strict=True)]
    for start in range(0, len(rows), 7):  # several requests, as served
        batch = schema.rows_from_lists(rows[start : start + 7], "instance")
        counter.observe(batch, Prediction(np.zeros(batch.count, dtype=np.int64), None))

    counted = counter.feature_counts()
    for name, profile in profiles.items():
        labels = (
            [str(i) for i in range(len(profile.proportions))]
            if isinstance(profile, NumericProfile)
            else [*profile.categories, "__other__"]
        )
        shares = [counted[name][label] / len(x) for label in labels]
        assert shares == pytest.approx(profile.proportions, abs=1e-9), name
        assert counted[name]["null"] == 0
    # The test and benchmark helper counts as the server does.
    columns: dict[str, Any] = {n: x[:, j] for j, n in enumerate(names)}
    columns["species"] = species
    assert count_window(card.baseline, columns) == counted


def test_a_value_on_an_edge_goes_to_the_bin_above_in_training_and_serving() -> None:
    # 1.1 is a quartile of this column. Read as float32 it is 1.10000002, above the float64
    # 1.1: binned as float64 the four 1.1s would fall below the edge they make.
    values = np.array([0.5, 0.7, 1.1, 1.1, 1.1, 1.1, 1.3, 1.5, 1.7, 1.9])
    edge = float(np.float32(1.1))
    assert edge > 1.1
    profile = numeric_profile(values, bins=4)
    assert profile.edges == [edge, float(np.float32(1.45))]
    assert profile.proportions == [0.2, 0.5, 0.3]
    served = NumericBins(profile.edges)  # the server's counter, fed float32 rows
    served.add(values.astype(np.float32))
    assert served.labels() == {"0": 2, "1": 5, "2": 3, "null": 0}
    assert count_numeric(profile, values) == served.labels()


def test_profile_edges_drop_the_minimum_and_merge_ties() -> None:
    # A flag set on 5 % of rows: every decile is 0, one edge at the minimum, dropped (it
    # would leave bin 0 empty): one bin.
    rare = np.array([0.0] * 95 + [1.0] * 5)
    assert profile_edges(rare) == []
    assert numeric_profile(rare).proportions == [1.0]
    # Half set: deciles 0 (dropped), 0.5 (interpolated), and 1 four times (merged).
    half = np.array([0.0] * 50 + [1.0] * 50)
    assert profile_edges(half) == [0.5, 1.0]
    assert numeric_profile(half).proportions == [0.5, 0.0, 0.5]
    # A column with no value at all still has a profile: one bin, all nulls.
    empty = numeric_profile(np.array([np.nan, np.nan]))
    assert (empty.edges, empty.proportions, empty.null_rate) == ([], [1.0], 1.0)


def test_unseen_categories_and_nulls_are_counted_apart() -> None:
    profile = categorical_profile(["a", "b", "b", None])
    assert profile.categories == ["b", "a"]  # most frequent first
    assert profile.proportions == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert profile.null_rate == 0.25
    baseline = Baseline(rows=4, features={"c": profile}, predictions=profile)
    assert count_window(baseline, {"c": ["a", "z", None, "b"]}) == {
        "c": {"b": 1, "a": 1, "__other__": 1, "null": 1}
    }


def test_the_drift_document_round_trips_through_its_one_definition() -> None:
    counts = DriftCounts(
        model="iris",
        version="v1",
        rows=3,
        features={"x": {"0": 2, "1": 1, "null": 0}},
        predictions={"0": 3},
        out_of_schema={"x": 1},
        prediction_kind="classes",
    )
    doc = json.loads(dumps(counts.to_doc()))
    assert set(doc) == {"model", "version", "rows", "features", "outOfSchema", "predictions"}
    assert DriftCounts.parse(doc) == counts
