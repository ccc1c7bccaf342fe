"""A Dataset's own credentials on the real control plane: an S3 store that checks keys (moto,
on the node's address so that pods reach it), the operator-wide S3 Secret configured but
holding a key the store refuses, and a Dataset whose `credentialsSecretRef` names a Secret
with the right one. Its profiling and training pods get exactly that Secret, and read with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import OPERATOR_WIDE_S3_SECRET, Cluster, restricted_namespace
from tests.cluster.test_story import wait_for
from tests.sources.test_credentials import BUCKET, KEY, WRONG, pod_secrets
from tests.support.procs import free_port
from tests.support.s3 import authenticated_store
from tests.trainer.conftest import churn_frame

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

NS = "sources"


def _secret(cluster: Cluster, name: str, keys: dict[str, str]) -> None:
    literals = [f"--from-literal={k}={v}" for k, v in keys.items()]
    cluster.kubectl("create", "secret", "generic", name, "-n", NS, *literals)


def _status(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    return dict(cluster.get(f"{kind}/{name}", "-n", NS).get("status") or {})


def _job_pod_spec(cluster: Cluster, owner: str) -> dict[str, Any]:
    jobs = cluster.get("jobs", "-n", NS, "-l", f"pilotage.dev/owner-name={owner}")["items"]
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return dict(jobs[0]["spec"]["template"]["spec"])


def test_a_dataset_reads_s3_with_its_own_secret_not_the_operator_wide_one(
    operator_installed: Cluster, tmp_path: Path
) -> None:
    cluster = operator_installed
    restricted_namespace(cluster, NS)
    node_ip = f"10.244.{cluster.state.n}.1"  # the bridge's address: pods route to it
    body = churn_frame(120).to_csv(index=False).encode()
    objects = {f"{BUCKET}/{KEY}": body}
    with authenticated_store(node_ip, free_port(), tmp_path / "moto.log", objects) as store:
        _secret(cluster, OPERATOR_WIDE_S3_SECRET, WRONG)
        _secret(
            cluster,
            "team-s3",
            {
                "AWS_ACCESS_KEY_ID": store.access_key,
                "AWS_SECRET_ACCESS_KEY": store.secret_key,
                "AWS_ENDPOINT_URL": store.endpoint,
                "AWS_REGION": "us-east-1",
            },
        )
        manifests = [
            {
                "apiVersion": "pilotage.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "churn", "namespace": NS},
                "spec": {
                    "source": {
                        "uri": f"s3://{BUCKET}/{KEY}",
                        "credentialsSecretRef": {"name": "team-s3"},
                    },
                    "target": "churned",
                },
            },
            {
                "apiVersion": "pilotage.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "churn-v1", "namespace": NS},
                "spec": {
                    "datasetRef": {"name": "churn"},
                    "model": {"algorithm": "logistic_regression"},
                },
            },
        ]
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))

        ds = wait_for(
            "the Dataset to be profiled",
            lambda: (
                (s := _status(cluster, "dataset", "churn")).get("phase") in ("Ready", "Failed")
                and s
            ),
            describe=lambda: _status(cluster, "dataset", "churn"),
        )
        assert ds["phase"] == "Ready", ds
        assert ds["rows"] == 120
        assert ds["fingerprint"] == hashlib.sha256(body).hexdigest()
        tj = wait_for(
            "the TrainingJob to finish",
            lambda: (
                (s := _status(cluster, "trainingjob", "churn-v1")).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            describe=lambda: _status(cluster, "trainingjob", "churn-v1"),
        )
        assert tj["phase"] == "Succeeded", tj

        # both runs' pods were given the Dataset's Secret and no other, though the operator
        # has an S3 Secret of its own configured (the artifacts are on the claim)
        for owner in ("churn", "churn-v1"):
            pod = _job_pod_spec(cluster, owner)
            assert pod_secrets(pod) == {"team-s3"}, owner
            (container,) = pod["containers"]
            assert "/var/run/secrets/pilotage.dev/credentials/team-s3" in {
                m["mountPath"] for m in container["volumeMounts"]
            }
        assert "team-data" in (tmp_path / "moto.log").read_text()  # it was this store
