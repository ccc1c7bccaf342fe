"""Remote sources and outputs: S3 against a real moto server process, HTTP against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotage.api.modelcard import ModelCard
from tests.support.procs import free_port, pilotage, running
from tests.support.s3 import moto_server, s3_client
from tests.trainer.conftest import CHURN_SCHEMA, churn_frame, dataset, job, manifests

BUCKET = "pilotage-data"


@pytest.fixture
def s3_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with moto_server(tmp_path) as env:
        yield env


def _client(env: dict[str, str]) -> object:
    return s3_client(env)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pilotage(*args), capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def test_train_from_s3_to_s3(tmp_path: Path, s3_env: dict[str, str]) -> None:
    s3 = _client(s3_env)
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    s3.put_object(  # type: ignore[attr-defined]
        Bucket=BUCKET, Key="tables/churn.csv", Body=churn_frame(200).to_csv(index=False).encode()
    )
    path = manifests(
        tmp_path / "m.yaml",
        dataset("churn", f"s3://{BUCKET}/tables/churn.csv", target="churned", schema=CHURN_SCHEMA),
        job("churn", "logistic_regression"),
    )
    out = f"s3://{BUCKET}/models/default/churn/v1"
    result = _run(["train", "-f", str(path), "--output", out], s3_env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["phase"] == "Succeeded" and summary["modelUri"] == out
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="models/default/churn/v1/")  # type: ignore[attr-defined]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == [
        "model.json",
        "model.onnx",
    ]
    card = ModelCard.from_json(
        s3.get_object(Bucket=BUCKET, Key="models/default/churn/v1/model.json")["Body"].read()  # type: ignore[attr-defined]
    )
    assert card.onnx.input_layout == "columns"

    missing = manifests(
        tmp_path / "missing.yaml",
        dataset("churn", f"s3://{BUCKET}/tables/nope.csv", target="churned"),
        job("churn", "logistic_regression"),
    )
    failed = _run(["train", "-f", str(missing), "--output", f"s3://{BUCKET}/models/x"], s3_env)
    assert failed.returncode == 1
    assert f"cannot read s3://{BUCKET}/tables/nope.csv" in failed.stderr.strip().splitlines()[-1]
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix="models/x")  # type: ignore[attr-defined]
    assert left.get("KeyCount", 0) == 0


def test_profile_from_http(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    churn_frame(150).to_parquet(www / "churn.parquet")
    port = free_port()
    server = [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "--directory",
        str(www),
    ]
    base = f"http://127.0.0.1:{port}"
    with running(server, tmp_path / "http.log", ready_url=f"{base}/"):
        path = manifests(
            tmp_path / "m.yaml", dataset("d", f"{base}/churn.parquet", target="churned")
        )
        result = _run(["profile", "-f", str(path), "--output", (tmp_path / "p").as_uri()], {})
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["phase"] == "Ready" and summary["rows"] == 150
        profile = json.loads((tmp_path / "p" / "profile.json").read_text())
        assert profile["columns"]["country"]["kind"] == "categorical"
        assert profile["columns"]["age"]["kind"] == "numeric"

        missing = manifests(
            tmp_path / "m2.yaml", dataset("d", f"{base}/nope.csv", target="churned")
        )
        failed = _run(["profile", "-f", str(missing)], {})
        assert failed.returncode == 1
        assert "HTTP 404" in failed.stderr.strip().splitlines()[-1]
