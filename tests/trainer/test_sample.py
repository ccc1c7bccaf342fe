"""The model card's reference sample: bounded, seeded, drawn from the training split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pilotage.api.modelcard import ModelCard
from pilotage.server.model import load_model
from pilotage.trainer.run import train
from pilotage.trainer.sampling import SAMPLE_ROWS, sample_size, training_sample
from pilotage.trainer.validate import Column
from tests.trainer.conftest import CHURN_SCHEMA, churn_frame, dataset, job


def _train(tmp_path: Path, csv: Path, out: str, seed: int) -> tuple[ModelCard, bytes, bytes]:
    summary = train(
        dataset(
            "churn",
            csv.as_uri(),
            target="churned",
            schema=CHURN_SCHEMA,
            split={"testFraction": 0.25, "seed": 1},
        ),
        job("churn", "logistic_regression", seed=seed),
        (tmp_path / out).as_uri(),
    )
    assert summary["phase"] == "Succeeded", summary["message"]
    text = (tmp_path / out / "model.json").read_bytes()
    return ModelCard.from_json(text), text, (tmp_path / out / "model.onnx").read_bytes()


def _served(x: float) -> float:
    """A number as the server's reservoir shows it: float32, shortest decimal form."""
    return float(str(np.float32(x)))


def _as_key(row: list[object]) -> tuple[object, ...]:
    return tuple(None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in row)


def test_card_carries_a_bounded_deterministic_sample_of_training_rows(tmp_path: Path) -> None:
    frame = churn_frame(1200, seed=11)
    csv = tmp_path / "churn.csv"
    frame.to_csv(csv, index=False)
    card, text, onnx = _train(tmp_path, csv, "a", seed=3)
    sample = card.baseline.sample
    assert sample is not None
    assert sample.columns == ["age", "purchases", "country"]
    assert card.baseline.rows == 900 and len(sample.rows) == SAMPLE_ROWS
    assert all(len(row) == 3 for row in sample.rows)

    # Every sampled row is a row of the data set, as the server would see it (float32).
    known = {
        _as_key([_served(a), _served(p), c])
        for a, p, c in frame[["age", "purchases", "country"]].itertuples(index=False)
    }
    assert all(_as_key(row) in known for row in sample.rows)
    ages = [row[0] for row in sample.rows]
    countries = [row[2] for row in sample.rows]
    assert None in ages and all(a is None or isinstance(a, float) for a in ages)
    assert None in countries and {c for c in countries if c is not None} <= {"FR", "DE", "ES", "UK"}
    # Nulls stay nulls in the file, and it stays small.
    raw = json.loads(text)["baseline"]["sample"]
    assert raw["columns"] == sample.columns and any(r[0] is None for r in raw["rows"])
    assert len(text) < 64 * 1024

    again, _, again_onnx = _train(tmp_path, csv, "b", seed=3)
    assert again.baseline.sample == sample
    assert again_onnx == onnx  # the sample goes to model.json only

    other, _, _ = _train(tmp_path, csv, "c", seed=4)
    assert other.baseline.sample is not None and other.baseline.sample.rows != sample.rows

    # The server loads the card with its sample.
    loaded = load_model((tmp_path / "a").as_uri(), tmp_path / "cache")
    assert [t.name for t in loaded.inputs] == ["age", "purchases", "country"]


def test_small_split_is_sampled_whole_and_wide_tables_get_fewer_rows() -> None:
    assert sample_size(120, 4) == 120
    assert sample_size(10_000, 4) == SAMPLE_ROWS
    assert sample_size(10_000, 100) == 100  # 10,000 values at most
    assert sample_size(10_000, 50_000) == 1
    assert sample_size(0, 4) == 0

    frame = pd.DataFrame({"x": np.arange(50, dtype=np.float64) + 0.1, "c": ["a", None] * 25})
    columns = [Column("x", "float"), Column("c", "category")]
    whole = training_sample(frame, columns, seed=0)
    assert [row[0] for row in whole.rows] == [_served(x) for x in frame["x"]]
    assert [row[1] for row in whole.rows] == ["a", None] * 25
    part = training_sample(frame, columns, seed=0, limit=10)
    assert len(part.rows) == 10 and part == training_sample(frame, columns, seed=0, limit=10)
    assert [row[0] for row in part.rows] == sorted(row[0] for row in part.rows)  # frame order


def test_cards_without_a_sample_still_load(tmp_path: Path) -> None:
    frame = churn_frame(200)
    csv = tmp_path / "churn.csv"
    frame.to_csv(csv, index=False)
    _, text, _ = _train(tmp_path, csv, "a", seed=0)
    doc = json.loads(text)
    del doc["baseline"]["sample"]
    old = ModelCard.from_json(json.dumps(doc))
    assert old.baseline.sample is None
    assert "sample" not in json.loads(old.to_json())["baseline"]
