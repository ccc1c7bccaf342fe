"""One binning: the trainer's profiles and the server's counters bin the same data alike.

The model card's bins are written by the trainer (``numeric_profile``,
``categorical_profile``) and counted by the model server (``DriftCounter``); both come
from ``pilotage.drift.baseline`` (tests/test_boundaries.py checks that no other module
bins). Counting the training rows of a card the real trainer wrote through the server's
counters must give back the card's proportions exactly, edge values included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pilotage.api.modelcard import Baseline, ModelCard, NumericProfile
from pilotage.drift import count_window
from pilotage.drift.baseline import (
    NumericBins,
    categorical_profile,
    count_numeric,
    numeric_profile,
    profile_edges,
)
from pilotage.server.drift import DriftCounter
from pilotage.server.engine import Prediction
from pilotage.server.responses import dumps
from pilotage.server.rows import RowSchema
from pilotage.trainer.run import train
from pilotage.wire.drift_counts import SCHEMA, DriftCounts
from tests.support.models import build_model
from tests.trainer.conftest import churn_frame, job
from tests.trainer.conftest import dataset as trainer_dataset


def _trained_card(tmp_path: Path, dataset: str) -> ModelCard:
    """The model card the real trainer writes for ``dataset`` (builtin or a CSV)."""
    if dataset.startswith("builtin://"):
        model = build_model(tmp_path / "model", dataset.removeprefix("builtin://"))
    else:
        ds = trainer_dataset("churn", dataset, target="churned")
        summary = train(ds, job("churn", "logistic_regression"), (tmp_path / "model").as_uri())
        assert summary["phase"] == "Succeeded", summary["message"]
        model = tmp_path / "model"
    return ModelCard.model_validate_json((model / "model.json").read_text())


@pytest.mark.parametrize("source", ["builtin://iris", "churn.csv"])
def test_the_server_counts_the_training_rows_into_the_cards_proportions(
    tmp_path: Path, source: str
) -> None:
    if source == "churn.csv":  # a category, and nulls in a numeric and a categorical column
        churn_frame().to_csv(tmp_path / source, index=False)
        source = (tmp_path / source).as_uri()
    card = _trained_card(tmp_path, source)
    sample = card.baseline.sample
    # The card's sample is every training row here (fewer than its 500), as JSON carries
    # them: numbers in float32's shortest form, categories, null.
    assert sample is not None and len(sample.rows) == card.baseline.rows
    order = [sample.columns.index(name) for name in card.feature_names()]
    rows: list[list[Any]] = [[row[i] for i in order] for row in sample.rows]
    schema = RowSchema(card)
    counter = DriftCounter(card, schema, reservoir_size=0)
    for start in range(0, len(rows), 7):  # several requests, as served
        batch = schema.rows_from_lists(rows[start : start + 7], "instance")
        counter.observe(batch, Prediction(np.zeros(batch.count, dtype=np.int64), None))

    counted = counter.feature_counts()
    columns: dict[str, Any] = {
        name: [row[j] for row in rows] for j, name in enumerate(card.feature_names())
    }
    on_edges = 0
    for name, profile in card.baseline.features.items():
        if isinstance(profile, NumericProfile):
            labels = [str(i) for i in range(len(profile.proportions))]
            columns[name] = np.array(columns[name], dtype=np.float64)  # None → NaN
            on_edges += int(np.isin(columns[name].astype(np.float32), profile.edges).sum())
        else:
            labels = [*profile.categories, "__other__"]
        present = sum(counted[name][label] for label in labels)
        assert present + counted[name]["null"] == len(rows)
        assert counted[name]["null"] / len(rows) == pytest.approx(profile.null_rate, abs=1e-9)
        shares = [counted[name][label] / present for label in labels]
        assert shares == pytest.approx(profile.proportions, abs=1e-9), name
    # Deciles of data measured to a few digits land on data values: those values sit
    # exactly on an edge, and still land where the trainer put them.
    assert on_edges > 10
    # The test and benchmark helper counts as the server does.
    assert count_window(card.baseline, columns) == counted
    # The /drift document carries them as its one definition says.
    doc = json.loads(dumps(counter.snapshot(card.name, card.version).to_doc()))
    assert set(doc) == set(SCHEMA["properties"])
    assert DriftCounts.parse(doc).features == counted


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
