"""Artifact paths stay inside their directory (issue 16, item 13): a card's
``onnx.file: ../m2/model.onnx`` was served from outside the model directory, and
``pvc://../../…`` escaped the PVC root. ``..``, absolute names and symbolic links that
lead out are refused; links that stay inside still work."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pilotage.server.model import ModelLoadError, load_model
from pilotage.storage import StorageError, local_path, read_bytes
from tests.server.artifacts import Artifact, build_iris
from tests.support.procs import pilotage


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return build_iris(tmp_path_factory.mktemp("models") / "m2")


def _with_card(tmp_path: Path, iris: Artifact, **onnx: str) -> Path:
    """A model directory m1 beside m2 whose card is m2's with ``onnx`` fields changed."""
    shutil.copytree(iris.directory, tmp_path / "m2")
    m1 = tmp_path / "m1"
    m1.mkdir()
    card = json.loads((iris.directory / "model.json").read_text())
    card["onnx"].update(onnx)
    (m1 / "model.json").write_text(json.dumps(card))
    return m1


@pytest.mark.parametrize("name", ["../m2/model.onnx", "/abs/model.onnx", "..", "sub/model.onnx"])
def test_a_card_naming_a_file_outside_its_directory_is_refused(
    tmp_path: Path, iris: Artifact, name: str
) -> None:
    m1 = _with_card(tmp_path, iris, file=name)
    with pytest.raises(ModelLoadError, match="must be a file name inside the model directory"):
        load_model(m1.as_uri(), tmp_path / "cache")


def test_a_model_file_linked_out_of_its_directory_is_refused(
    tmp_path: Path, iris: Artifact
) -> None:
    m1 = _with_card(tmp_path, iris)
    (m1 / "model.onnx").symlink_to(tmp_path / "m2" / "model.onnx")  # the checksum matches
    with pytest.raises(ModelLoadError, match=r"leads outside .* symbolic link"):
        load_model(m1.as_uri(), tmp_path / "cache")
    done = subprocess.run(
        pilotage("serve", "--model-uri", m1.as_uri(), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "refusing to serve" in done.stderr and "Traceback" not in done.stderr


def test_links_that_stay_inside_still_work(tmp_path: Path, iris: Artifact) -> None:
    m1 = _with_card(tmp_path, iris, file="graph.onnx")
    shutil.copy(tmp_path / "m2" / "model.onnx", m1 / "real.onnx")
    (m1 / "graph.onnx").symlink_to("real.onnx")
    (tmp_path / "linked").symlink_to(m1)  # the directory itself may be a link
    loaded = load_model((tmp_path / "linked").as_uri(), tmp_path / "cache")
    assert loaded.card.onnx.file == "graph.onnx"


def test_pvc_uris_stay_inside_their_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "pvc"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "sub" / "d.csv").write_text("a,b\n1,2\n")
    (root / "other").mkdir()
    (root / "other" / "secret.csv").write_text("token\n42\n")
    secret = tmp_path / "outside.csv"
    secret.write_text("x,y\n1,2\n")
    (root / "data" / "out").symlink_to(secret)
    (root / "data" / "in").symlink_to(root / "data" / "sub" / "d.csv")
    monkeypatch.setenv("PILOTAGE_PVC_ROOT", str(root))

    assert read_bytes("pvc://data/sub/d.csv") == b"a,b\n1,2\n"
    assert read_bytes("pvc://data/in") == b"a,b\n1,2\n"
    for uri in (
        "pvc://data/../other/secret.csv",
        "pvc://data/sub/../../other/secret.csv",
        "pvc://data/../../outside.csv",
        "pvc://data/out",
    ):
        with pytest.raises(StorageError, match="leads outside"):
            read_bytes(uri)
    for uri in ("pvc://../outside.csv", "pvc://../../etc/passwd", "pvc://Data/x"):
        with pytest.raises(StorageError, match="is not a PersistentVolumeClaim name"):
            local_path(uri)
