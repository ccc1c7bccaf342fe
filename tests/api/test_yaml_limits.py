"""YAML from a user is bounded: alias bombs, self-referencing aliases, deep nesting, huge
files and files that are not files are refused with one line, before anything expands.

The attack (issue 16, item 10): 589 bytes of aliases in ``spec.model.hyperparameters``
expanded to 1.3 GB of memory and an 80 MB row in the local store, after which every
``pilotage get`` took 11 s. The bombs here are sized so that, unbounded, they would still
finish in a few seconds (a 2.6 MB expansion) — the fixed loader refuses them at once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from pilotage.api import parse_resource
from pilotage.api.manifests import (
    DEFAULT_MAX_BYTES,
    MAX_BYTES_ENV,
    ManifestError,
    load_documents,
    read_manifest_text,
    safe_load_all,
)
from pilotage.local.store import MAX_OBJECT_BYTES, Store, StoreError
from pilotage.router.table import decode_document, load_table_file
from pilotage.wire.routes import RoutingError
from tests.support.procs import pilotage


def bomb(levels: int, indent: str = "") -> str:
    """``levels`` lines of nine aliases each: 9**levels scalars once expanded."""
    lines = [f'{indent}l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*l{i - 1}"] * 9)
        lines.append(f"{indent}l{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


def training_job(hyperparameters: str) -> str:
    return (
        "apiVersion: pilotage.dev/v1alpha1\n"
        "kind: TrainingJob\n"
        "metadata: {name: bomb}\n"
        "spec:\n"
        "  datasetRef: {name: iris}\n"
        "  model:\n"
        "    algorithm: logistic_regression\n"
        "    hyperparameters:\n" + hyperparameters
    )


def test_the_589_byte_billion_laughs_is_refused_before_it_expands() -> None:
    text = training_job(bomb(9, indent="      "))
    with pytest.raises(ManifestError, match=r"expands to more than .* YAML aliases"):
        load_documents(text, "bomb.yaml")


def test_apply_refuses_an_alias_bomb_in_hyperparameters_and_stores_nothing(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "bomb.yaml"
    # 9**6 = 531441 scalars: 2.6 MB expanded from 400 bytes of text.
    manifest.write_text(training_job(bomb(6, indent="      ")))
    assert manifest.stat().st_size < 1000
    state = tmp_path / "state"
    done = subprocess.run(
        pilotage("apply", "-f", str(manifest), "--state-dir", str(state)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "bomb.yaml" in lines[0] and "YAML aliases" in lines[0]
    assert MAX_BYTES_ENV in lines[0]
    store = Store(state)
    try:
        assert store.objects() == []
    finally:
        store.close()


def test_small_aliases_still_work() -> None:
    docs = load_documents(training_job("      common: &c {C: 0.5}\n      again: *c\n"), "ok.yaml")
    hyper = docs[0]["spec"]["model"]["hyperparameters"]
    assert hyper == {"common": {"C": 0.5}, "again": {"C": 0.5}}


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(ManifestError, match="refers to a node that contains it"):
        load_documents("a: &a [1, *a]\n", "loop.yaml")


@pytest.mark.parametrize("depth", [150, 5000])
def test_deep_nesting_is_refused(depth: int) -> None:
    with pytest.raises(ManifestError, match="nested more than 100 levels"):
        load_documents("x: " + "[" * depth + "]" * depth + "\n", "deep.yaml")


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    text = training_job(bomb(3, indent="      "))  # 729 scalars, about 4 KB expanded
    assert len(load_documents(text, "ok.yaml")) == 1
    monkeypatch.setenv(MAX_BYTES_ENV, "2000")
    with pytest.raises(ManifestError, match="expands to more than 2000 bytes"):
        load_documents(text, "small.yaml")
    monkeypatch.setenv(MAX_BYTES_ENV, "100")
    with pytest.raises(ManifestError, match="more than the limit of 100"):
        load_documents(text, "small.yaml")
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ManifestError, match=f"{MAX_BYTES_ENV}: must be a positive"):
        load_documents(text, "small.yaml")


def test_an_oversized_manifest_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(DEFAULT_MAX_BYTES * 64)  # sparse: 64 MiB of nothing
    with pytest.raises(ManifestError, match=f"more than the limit of {DEFAULT_MAX_BYTES}"):
        read_manifest_text(big)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_manifest_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "manifest.yaml"
        os.mkfifo(path)  # no writer: an ordinary read would block forever
        expected = "a FIFO"
    else:
        path = Path("/dev/zero")  # an ordinary read never ends
        expected = "a character device"
    with pytest.raises(ManifestError, match=f"not a regular file \\({expected}\\)"):
        read_manifest_text(path)


def test_routing_documents_and_files_are_bounded(tmp_path: Path) -> None:
    table = "deployment: iris\nmode: canary\nextra:\n" + bomb(6, indent="  ")
    with pytest.raises(RoutingError, match="YAML aliases"):
        decode_document(table)
    path = tmp_path / "routes.yaml"
    path.write_text(table)
    with pytest.raises(RoutingError, match=r"routes.yaml: .*YAML aliases"):
        load_table_file(path)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(RoutingError, match="not a regular file"):
        load_table_file(fifo)


def test_route_refuses_a_bombed_routing_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("deployment: iris\nmode: canary\nextra:\n" + bomb(6, indent="  "))
    done = subprocess.run(
        pilotage("route", "--config", str(path), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "YAML aliases" in done.stderr and "Traceback" not in done.stderr


def test_the_store_refuses_an_object_larger_than_a_cluster_would_hold(tmp_path: Path) -> None:
    doc = yaml.safe_load(training_job("      blob: x\n"))
    doc["spec"]["model"]["hyperparameters"]["blob"] = "x" * (MAX_OBJECT_BYTES + 1)
    store = Store(tmp_path / "state")
    try:
        with pytest.raises(StoreError, match=f"more than the {MAX_OBJECT_BYTES}"):
            store.apply(parse_resource(doc))
        assert store.objects() == []
    finally:
        store.close()


def test_safe_load_all_bounds_bytes_input_too() -> None:
    with pytest.raises(ManifestError, match="YAML aliases"):
        list(safe_load_all(bomb(7).encode()))
