"""The pure builders: every child object validates against the Kubernetes 1.30 schema and
the restricted Pod Security Standard, and carries what the issue asks for."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotage.api.dataset import DataSource
from pilotage.control.types import (
    EnsureRouter,
    EnsureServer,
    Event,
    RouteTable,
    RouteVariant,
    ServerSettings,
    StartRun,
)
from pilotage.operator import build, names
from pilotage.operator.pss import restricted_violations
from pilotage.operator.settings import OperatorSettings
from tests.operator.validation import problems, schema_errors

OWNER: dict[str, Any] = {
    "apiVersion": "pilotage.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "iris-v1", "namespace": "ml", "uid": "1234-abcd"},
}
MD_OWNER = {**OWNER, "kind": "ModelDeployment", "metadata": {**OWNER["metadata"], "name": "iris"}}
S3 = OperatorSettings(
    artifact_uri="s3://models/pilotage", s3_endpoint="http://minio:9000", s3_secret="s3-creds"
)
PVC = OperatorSettings(artifact_uri="pvc://artifacts/pilotage")


def run(**kw: Any) -> StartRun:
    defaults: dict[str, Any] = {
        "name": "iris-v1-1",
        "purpose": "train",
        "owner_kind": "TrainingJob",
        "owner_name": "iris-v1",
        "manifests": [
            {
                "apiVersion": "pilotage.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "iris"},
                "spec": {"source": {"uri": "pvc://data/iris.csv"}},
            }
        ],
        "output_uri": "pvc://artifacts/pilotage/ml/iris-v1/iris-v1",
        "data": (DataSource(uri="pvc://data/iris.csv"),),
        "deadline_seconds": 600,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    }
    return StartRun(**{**defaults, **kw})


def every_object() -> list[dict[str, Any]]:
    server = EnsureServer(
        deployment="iris",
        version="v1.2_rc",
        model_uri="s3://models/iris/v1",
        replicas=2,
        settings=ServerSettings(threads=2, resources={"limits": {"cpu": "1"}}),
    )
    table = RouteTable(mode="canary", variants=(RouteVariant("stable", "v1.2_rc", 100),))
    doc = table.to_document("iris", {"v1.2_rc": "http://iris-v1-2-rc.ml.svc:8080"})
    event = Event("Warning", "RolledBack", "p99 41ms > SLO 20ms")
    return [
        build.build_job(run(), OWNER, PVC),
        build.build_job(run(purpose="profile", deadline_seconds=None), OWNER, S3),
        build.build_manifests_configmap(run(), OWNER),
        build.build_server_deployment(server, MD_OWNER, S3),
        build.build_server_service("iris", "v1.2_rc", MD_OWNER, S3),
        build.build_router_deployment(EnsureRouter("iris", 2), MD_OWNER, S3),
        build.build_router_deployment(
            EnsureRouter("wine", 1, variant_token_secret="testers", feedback_token_secret="labels"),
            MD_OWNER,
            S3,
        ),
        build.build_router_service("iris", MD_OWNER, S3),
        build.build_routes_configmap("iris", doc, MD_OWNER),
        build.build_router_token_secret("iris", "s3cr3t", MD_OWNER),
        build.build_event(MD_OWNER, event, "2024-05-01T10:00:00Z"),
    ]


@pytest.mark.parametrize(
    "obj", every_object(), ids=lambda o: f"{o['kind']}-{o['metadata'].get('name', 'event')}"
)
def test_valid_against_schema_and_restricted_pss(obj: dict[str, Any]) -> None:
    assert problems(obj) == []


@pytest.mark.parametrize("obj", every_object()[:-1], ids=lambda o: o["metadata"]["name"])
def test_owned_and_labelled(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    (ref,) = meta["ownerReferences"]
    assert ref["uid"] == "1234-abcd" and ref["controller"] is True
    assert meta["labels"][names.LABEL_MANAGED_BY] == names.MANAGER
    assert meta["labels"][names.LABEL_PART_OF] == "pilotage"
    assert meta["namespace"] == "ml"


def test_the_checks_catch_bad_objects() -> None:
    """The validators are not vacuous: a wrong field and a root pod are reported."""
    job = build.build_job(run(), OWNER, PVC)
    job["spec"]["backoffLimit"] = "two"
    assert schema_errors(job)
    pod_spec = job["spec"]["template"]["spec"]
    pod_spec["hostNetwork"] = True
    container = pod_spec["containers"][0]
    container["securityContext"] = {"privileged": True}
    pod_spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    pod_spec["securityContext"] = {}
    found = "\n".join(restricted_violations(pod_spec))
    for expected in (
        "hostNetwork",
        "privileged",
        "allowPrivilegeEscalation",
        "drop must include ALL",
        "runAsNonRoot",
        "seccompProfile",
        "hostPath",
    ):
        assert expected in found


def test_job_runs_the_trainer_with_its_manifests_and_reports_by_termination_message() -> None:
    job = build.build_job(run(), OWNER, PVC)
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] == 600 and spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["command"] == ["pilotage"]
    assert c["args"] == [
        "train",
        "-f",
        "/config/manifests.yaml",
        "--output",
        "pvc://artifacts/pilotage/ml/iris-v1/iris-v1",
    ]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"artifacts", "data"}, "output and data source claims are mounted"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/config", "/tmp", "/mnt/pvc/artifacts", "/mnt/pvc/data"} <= mounts
    cm = build.build_manifests_configmap(run(), OWNER)
    assert [d["kind"] for d in yaml.safe_load_all(cm["data"]["manifests.yaml"])] == ["Dataset"]
    assert pod["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]


def test_s3_credentials_come_from_the_secret() -> None:
    job = build.build_job(run(output_uri="s3://models/x"), OWNER, S3)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "AWS_SECRET_ACCESS_KEY",
    }


def test_server_and_router_have_probes_metrics_and_the_right_commands() -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in every_object()[:-1]}
    server = objs[("Deployment", "iris-v1-2-rc")]
    pod = server["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["args"][:3] == ["serve", "--model-uri", "s3://models/iris/v1"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["labels"][names.LABEL_MODEL_VERSION] == "v1.2_rc"
    assert server["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    service = objs[("Service", "iris-v1-2-rc")]
    assert service["spec"]["selector"] == server["spec"]["selector"]["matchLabels"]

    router = objs[("Deployment", "iris-router")]
    rc = router["spec"]["template"]["spec"]["containers"][0]
    assert rc["args"][:3] == ["route", "--config", "/etc/pilotage/routes.yaml"]
    assert "--admin-port" in rc["args"] and "--admin-token-file" in rc["args"]
    # the router's own health, not a model server path it would forward to stable (each
    # probe counted as a request: an autoscaled variant never went to zero)
    assert rc["readinessProbe"]["httpGet"]["path"] == "/pilotage/healthz"
    assert rc["livenessProbe"]["httpGet"]["path"] == "/pilotage/healthz"
    volumes = {v["name"]: v for v in router["spec"]["template"]["spec"]["volumes"]}
    assert volumes["routes"]["configMap"]["name"] == "iris-routes"
    assert volumes["admin-token"]["secret"]["secretName"] == "iris-router-admin"
    routes = yaml.safe_load(objs[("ConfigMap", "iris-routes")]["data"]["routes.yaml"])
    assert routes["variants"][0]["url"] == "http://iris-v1-2-rc.ml.svc:8080"


def test_server_pods_expose_fault_injection_only_when_the_operator_is_told_to() -> None:
    server = EnsureServer(deployment="iris", version="v1", model_uri="s3://m/v1", replicas=1)
    drills = OperatorSettings(artifact_uri="pvc://artifacts/pilotage", server_fault_injection=True)

    def args(settings: OperatorSettings) -> list[str]:
        built = build.build_server_deployment(server, MD_OWNER, settings)
        return list(built["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--enable-fault-injection" not in args(PVC)
    assert "--enable-fault-injection" in args(drills)


def test_server_pods_check_the_schema_strictly_only_when_the_spec_asks() -> None:
    from dataclasses import replace

    from pilotage.control.types import ServerSettings

    server = EnsureServer(deployment="iris", version="v1", model_uri="s3://m/v1", replicas=1)

    def args(action: EnsureServer) -> list[str]:
        built = build.build_server_deployment(action, MD_OWNER, PVC)
        return list(built["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--strict-schema" not in args(server)
    assert "--strict-schema" in args(replace(server, settings=ServerSettings(strict_schema=True)))


def test_router_mounts_the_token_secrets_the_spec_names() -> None:
    plain = build.build_router_deployment(EnsureRouter("iris", 1), MD_OWNER, S3)
    args = plain["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--variant-token-file" not in args and "--feedback-token-file" not in args
    router = build.build_router_deployment(
        EnsureRouter("iris", 1, variant_token_secret="testers", feedback_token_secret="labels"),
        MD_OWNER,
        S3,
    )
    pod = router["spec"]["template"]["spec"]
    c = pod["containers"][0]
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    for volume, secret, flag in (
        ("variant-token", "testers", "--variant-token-file"),
        ("feedback-token", "labels", "--feedback-token-file"),
    ):
        assert volumes[volume] == secret
        path = c["args"][c["args"].index(flag) + 1]
        assert path == f"{mounts[volume]}/token"


def test_long_names_stay_valid() -> None:
    long = "a" * 60
    server = EnsureServer(deployment=long, version="v" * 60, model_uri="s3://m/x", replicas=1)
    objs = [
        build.build_server_deployment(server, MD_OWNER, S3),
        build.build_router_deployment(EnsureRouter(long, 1), MD_OWNER, S3),
    ]
    for obj in objs:
        assert len(obj["metadata"]["name"]) <= 63
        assert all(len(v) <= 63 for v in obj["metadata"]["labels"].values())
        assert problems(obj) == []
