"""A Dataset's own `credentialsSecretRef` reads its S3 source, whatever the environment's
credentials are (on Kubernetes: the operator-wide S3 Secret's), and only its own Secret
reaches the run's pod."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pilotage.api.dataset import DataSource
from pilotage.control import reconcile_dataset
from pilotage.control.types import DatasetObservation, RunState, StartRun
from pilotage.local.platform import LocalPlatform
from pilotage.local.processes import Supervisor
from pilotage.local.store import Store as Store_
from pilotage.operator import build
from pilotage.operator.settings import OperatorSettings
from tests.support.procs import free_port, pilotage, wait_until
from tests.support.s3 import Store, authenticated_store
from tests.trainer.conftest import CHURN_SCHEMA, churn_frame, dataset, manifests

BUCKET = "team-data"
KEY = "tables/churn.csv"
WRONG = {  # what the operator-wide Secret holds here: a key the store does not know
    "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0",
    "AWS_SECRET_ACCESS_KEY": "wrong-secret-5e3a",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    body = churn_frame(120).to_csv(index=False).encode()
    with authenticated_store(
        "127.0.0.1", free_port(), tmp_path / "moto.log", {f"{BUCKET}/{KEY}": body}
    ) as s:
        yield s


def secret_dir(root: Path, name: str, keys: dict[str, str]) -> Path:
    """A Secret as Kubernetes mounts it: one file per key."""
    directory = root / name
    directory.mkdir(parents=True)
    for key, value in keys.items():
        (directory / key).write_text(value)
    return root


def profile(
    tmp_path: Path, store: Store, env: dict[str, str], secret: str | None
) -> subprocess.CompletedProcess[str]:
    spec: dict[str, Any] = {"target": "churned", "schema": CHURN_SCHEMA}
    ds = dataset("churn", f"s3://{BUCKET}/{KEY}", **spec)
    if secret is not None:
        ds = ds.model_copy(
            update={
                "spec": ds.spec.model_copy(
                    update={
                        "source": DataSource.model_validate(
                            {"uri": ds.spec.source.uri, "credentialsSecretRef": {"name": secret}}
                        )
                    }
                )
            }
        )
    path = manifests(tmp_path / f"m-{secret}.yaml", ds)
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        pilotage("profile", "-f", str(path)),
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "AWS_ENDPOINT_URL": store.endpoint, "AWS_REGION": "us-east-1", **WRONG, **env},
    )


def test_the_store_refuses_the_wrong_key(store: Store) -> None:
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|AccessDenied|Forbidden|403"):
        store.client(WRONG["AWS_ACCESS_KEY_ID"], WRONG["AWS_SECRET_ACCESS_KEY"]).get_object(
            Bucket=BUCKET, Key=KEY
        )
    assert store.client().get_object(Bucket=BUCKET, Key=KEY)["ContentLength"] > 0


def test_the_datasets_own_secret_reads_while_the_environments_is_wrong(
    tmp_path: Path, store: Store
) -> None:
    right = {"AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key}
    root = secret_dir(tmp_path / "secrets", "team-s3", right)
    ok = profile(tmp_path, store, {"PILOTAGE_CREDENTIALS_DIR": str(root)}, "team-s3")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary["phase"] == "Ready" and summary["rows"] == 120

    # the same Dataset without its Secret reads with the environment's key: refused
    refused = profile(tmp_path, store, {}, None)
    assert refused.returncode == 1
    assert f"cannot read s3://{BUCKET}/{KEY}" in refused.stderr.strip().splitlines()[-1]

    # a Secret that is not mounted is named; it never falls back to the environment's
    missing = profile(tmp_path, store, {"PILOTAGE_CREDENTIALS_DIR": str(root)}, "other")
    assert missing.returncode == 1
    assert "Secret 'other' is not mounted" in missing.stderr.strip().splitlines()[-1]

    # a Secret without a key says which
    half = secret_dir(tmp_path / "half", "team-s3", {"AWS_ACCESS_KEY_ID": store.access_key})
    partial = profile(tmp_path, store, {"PILOTAGE_CREDENTIALS_DIR": str(half)}, "team-s3")
    assert partial.returncode == 1
    assert "has no key AWS_SECRET_ACCESS_KEY" in partial.stderr.strip().splitlines()[-1]

    # its own endpoint wins too: the environment's points nowhere
    elsewhere = secret_dir(
        tmp_path / "endpoint", "team-s3", {**right, "AWS_ENDPOINT_URL": store.endpoint}
    )
    nowhere = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "PILOTAGE_CREDENTIALS_DIR": str(elsewhere),
    }
    assert profile(tmp_path, store, nowhere, "team-s3").returncode == 0

    # a Secret with a key the store refuses fails the run, and no key is ever repeated
    refusing = {"AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": "not-it-2f9c"}
    wrong = secret_dir(tmp_path / "wrong", "team-s3", refusing)
    denied = profile(tmp_path, store, {"PILOTAGE_CREDENTIALS_DIR": str(wrong)}, "team-s3")
    assert denied.returncode == 1
    assert f"cannot read s3://{BUCKET}/{KEY}" in denied.stderr.strip().splitlines()[-1]
    for run in (refused, missing, partial, denied):
        for value in (store.secret_key, "not-it-2f9c", WRONG["AWS_SECRET_ACCESS_KEY"]):
            assert value not in run.stdout + run.stderr


def _run(data: DataSource, output_uri: str) -> StartRun:
    return StartRun(
        name="churn-profile-g1",
        purpose="profile",
        owner_kind="Dataset",
        owner_name="churn",
        manifests=[],
        output_uri=output_uri,
        data=(data,),
    )


OWNER = {
    "apiVersion": "pilotage.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1"},
}
SETTINGS = OperatorSettings(
    artifact_uri="pvc://artifacts/pilotage",
    s3_endpoint="http://store:9000",
    s3_secret="pilotage-s3",
)


def pod_secrets(pod: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec names, through volumes or env."""
    named = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for container in pod["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                named.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                named.add(source["secretRef"]["name"])
    return named


def test_the_runs_pod_gets_exactly_the_datasets_secret() -> None:
    own = DataSource.model_validate(
        {"uri": f"s3://{BUCKET}/{KEY}", "credentialsSecretRef": {"name": "team-s3"}}
    )
    job = build.build_job(_run(own, "pvc://artifacts/pilotage/ml/datasets/churn"), OWNER, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    assert pod_secrets(pod) == {"team-s3"}
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {
        "name": volume["name"],
        "mountPath": f"{build.CREDENTIALS_DIR}/team-s3",
        "readOnly": True,
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PILOTAGE_CREDENTIALS_DIR"] == build.CREDENTIALS_DIR
    assert env["AWS_ENDPOINT_URL"] == "http://store:9000"  # the store's settings still apply
    assert "AWS_ACCESS_KEY_ID" not in env

    # writing artifacts to S3 still takes the operator-wide Secret, beside the Dataset's
    to_s3 = build.build_job(_run(own, "s3://models/ml/datasets/churn"), OWNER, SETTINGS)
    assert pod_secrets(to_s3["spec"]["template"]["spec"]) == {"team-s3", "pilotage-s3"}

    # without its own Secret, the source is read with the operator-wide one, as before
    shared = DataSource(uri=f"s3://{BUCKET}/{KEY}")
    plain = build.build_job(_run(shared, "pvc://artifacts/pilotage/x"), OWNER, SETTINGS)
    assert pod_secrets(plain["spec"]["template"]["spec"]) == {"pilotage-s3"}
    assert not [v for v in plain["spec"]["template"]["spec"]["volumes"] if "secret" in v]


def test_on_the_embedded_runtime_the_secret_is_a_directory_of_the_state(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local platform's run reads the Dataset's Secret from
    `<state>/secrets/<namespace>/<name>/`, while its own environment's key is wrong."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in {
        **WRONG,
        "AWS_ENDPOINT_URL": store.endpoint,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    state = Store_(tmp_path / "state")
    platform = LocalPlatform(state, Supervisor(state))
    right = {"AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key}
    secret_dir(platform.secrets_dir("team"), "team-s3", right)
    source = DataSource.model_validate(
        {"uri": f"s3://{BUCKET}/{KEY}", "credentialsSecretRef": {"name": "team-s3"}}
    )
    ds = dataset("churn", source.uri, target="churned", schema=CHURN_SCHEMA)
    ds = ds.model_copy(update={"spec": ds.spec.model_copy(update={"source": source})})
    ds.metadata.namespace = "team"
    result = reconcile_dataset(
        ds, DatasetObservation(None, platform.artifact_uri), datetime.now(UTC)
    )
    (start,) = result.actions
    assert isinstance(start, StartRun)
    platform.carry_out(start, "team")
    run = finished_run(platform, start.name, "team")
    assert run.phase == "Succeeded", run.message
    assert run.result is not None and run.result["rows"] == 120

    # the same Dataset in a namespace without that Secret: named, not read with the env's key
    platform.carry_out(replace(start, name=f"{start.name}-other"), "other")
    other = finished_run(platform, f"{start.name}-other", "other")
    assert other.phase == "Failed"
    assert "Secret 'team-s3' is not mounted" in (other.message or "")


def finished_run(platform: LocalPlatform, name: str, namespace: str) -> RunState:
    seen: list[RunState] = []

    def finished() -> bool:
        state = platform.run_state(namespace, name)
        if state is not None and state.phase != "Running":
            seen.append(state)
        return bool(seen)

    wait_until(finished, timeout=120, what=f"run {name} to finish")
    return seen[0]


def test_only_sources_that_take_credentials_accept_a_secret() -> None:
    ds = dataset("iris", "builtin://iris")
    source = DataSource.model_validate(
        {"uri": "builtin://iris", "credentialsSecretRef": {"name": "x"}}
    )
    ds = ds.model_copy(update={"spec": ds.spec.model_copy(update={"source": source})})
    result = reconcile_dataset(ds, DatasetObservation(None, "file:///a"), datetime.now(UTC))
    ready = result.status.conditions[0]
    assert (result.status.phase, ready.reason) == ("Failed", "InvalidSpec")
    assert (
        ready.message == "spec.source.credentialsSecretRef: builtin:// sources take no credentials"
    )
