"""A data source is one module plus its registration: a toy source registered through the
public API is validated by the models and the control core, wired into the run's pod by the
operator, and loaded and fingerprinted by the trainer, with nothing else changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

import pytest
from pydantic import ValidationError

from pilotage import sources
from pilotage.api.crd import crd
from pilotage.api.dataset import Dataset, DataSource
from pilotage.api.modelcard import ModelCard
from pilotage.control import reconcile_dataset
from pilotage.control.types import DatasetObservation, StartRun
from pilotage.operator import build
from pilotage.operator.settings import OperatorSettings
from pilotage.sources import Access, LoadedData, Source
from pilotage.trainer.run import profile, train
from tests.control.factories import ARTIFACTS, at
from tests.trainer.conftest import job

if TYPE_CHECKING:
    import pandas as pd


def _rows(source: DataSource) -> str:
    return parse_qs(urlparse(source.uri).query).get("rows", ["100"])[0]


class ToySource(Source):
    """`toy://line?rows=N`: y = 1 when 3*x1 - 2*x2 > 0, drawn from a seeded generator."""

    schemes = ("toy",)
    default_target = "y"

    def problem(self, source: DataSource) -> str | None:
        if not _rows(source).isdigit() or int(_rows(source)) < 10:
            return f"spec.source.uri: rows must be a whole number of at least 10, not {_rows(source)!r}"
        return super().problem(source)

    def access(self, source: DataSource) -> Access:
        return Access(claims=("toy-cache",))

    def load(self, source: DataSource) -> LoadedData:
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(7)
        n = int(_rows(source))
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        frame: pd.DataFrame = pd.DataFrame({"x1": x1, "x2": x2, "y": (3 * x1 - 2 * x2 > 0)})
        frame["y"] = frame["y"].astype(int)
        canonical = frame.to_csv(index=False).encode()
        return LoadedData(frame, hashlib.sha256(canonical).hexdigest())


@pytest.fixture
def toy() -> Iterator[type[ToySource]]:
    sources.register(ToySource)
    try:
        yield ToySource
    finally:
        sources.unregister(ToySource)


def toy_dataset(uri: str = "toy://line?rows=120") -> Dataset:
    return Dataset.model_validate(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "line", "generation": 1},
            "spec": {"source": {"uri": uri}},
        }
    )


def test_an_unregistered_scheme_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown data source scheme 'toy'.*builtin://"):
        toy_dataset()


def test_a_registered_toy_source_is_validated_wired_loaded_and_fingerprinted(
    toy: type[ToySource], tmp_path: Path
) -> None:
    ds = toy_dataset()  # the models accept the scheme now
    assert "toy" in sources.schemes()
    schema = json.dumps(crd(Dataset))
    assert "toy" in schema and "builtin" in schema  # the CRD's pattern lists it

    # the control core asks the source about the spec
    bad = reconcile_dataset(
        toy_dataset("toy://line?rows=x"),
        DatasetObservation(run=None, artifact_uri=ARTIFACTS),
        at(0),
    )
    assert bad.status.phase == "Failed"
    assert bad.status.conditions[0].reason == "InvalidSpec"
    assert "rows must be a whole number" in bad.status.conditions[0].message
    started = reconcile_dataset(ds, DatasetObservation(run=None, artifact_uri=ARTIFACTS), at(0))
    start = started.actions[0]
    assert isinstance(start, StartRun) and start.data == (ds.spec.source,)

    # the operator gives the run's pod what the source says it needs
    settings = OperatorSettings(artifact_uri="pvc://artifacts/pilotage")
    pod = build.build_job(
        start, {**ds.dump(), "metadata": {"name": "line", "namespace": "ml", "uid": "u"}}, settings
    )["spec"]["template"]["spec"]
    assert {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    } == {"artifacts", "toy-cache"}

    # the trainer loads it (whole: it gives no file) and fingerprints it by its own rule
    expected = ToySource().load(ds.spec.source)
    summary = profile(ds, (tmp_path / "profile").as_uri())
    assert summary["phase"] == "Ready", summary
    assert summary["rows"] == 120 and summary["target"] == "y"
    assert summary["fingerprint"] == expected.fingerprint
    out = tmp_path / "model"
    trained = train(ds, job("line", "logistic_regression"), out.as_uri())
    assert trained["phase"] == "Succeeded", trained
    card = ModelCard.from_json((out / "model.json").read_bytes())
    assert (
        card.dataset.fingerprint == expected.fingerprint and card.dataset.uri == ds.spec.source.uri
    )
    assert [f.name for f in card.features] == ["x1", "x2"]
    assert trained["metrics"]["accuracy"] > 0.9  # the line is learnt, so the rows are the toy's


def test_a_scheme_can_be_registered_once(toy: type[ToySource]) -> None:
    class Other(ToySource):
        pass

    with pytest.raises(ValueError, match="toy:// is registered already"):
        sources.register(Other)
    assert isinstance(sources.source_for("toy://line"), ToySource)
