"""The router pod gets what its inference-log sink needs: a pvc:// claim mounted (writable)
where the router looks for it, an s3:// sink the S3 endpoint and credentials."""

from __future__ import annotations

from typing import Any

from pilotage.control.routes import build_table
from pilotage.control.types import EnsureRouter
from pilotage.inferencelog.config import parse_logging
from pilotage.operator import build
from pilotage.operator.settings import OperatorSettings
from tests.control.factories import deployment, job, observe, run
from tests.operator.validation import problems

OWNER = {
    "apiVersion": "pilotage.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "1234-abcd"},
}
SETTINGS = OperatorSettings(
    artifact_uri="s3://models/pilotage", s3_endpoint="http://minio:9000", s3_secret="s3-creds"
)


def _router(sink: str | None) -> dict[str, Any]:
    return build.build_router_deployment(EnsureRouter("iris", 1, log_sink=sink), OWNER, SETTINGS)


def test_a_pvc_sink_is_mounted_writable_where_the_router_writes() -> None:
    router = _router("pvc://inference-logs/iris")
    assert problems(router) == []
    pod = router["spec"]["template"]["spec"]
    c = pod["containers"][0]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}  # fmt: skip
    (volume,) = [name for name, claim in claims.items() if claim == "inference-logs"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume]
    assert not mount.get("readOnly")
    env = {e["name"]: e.get("value") for e in c["env"]}
    # the router resolves pvc://CLAIM/dir under $PILOTAGE_PVC_ROOT/CLAIM: that is the mount
    assert mount["mountPath"] == f"{env['PILOTAGE_PVC_ROOT']}/inference-logs"
    assert parse_logging({"sampleRate": 1, "sink": {"uri": "pvc://inference-logs/iris"}}).enabled


def test_an_s3_sink_brings_the_s3_settings_and_no_sink_brings_nothing() -> None:
    c = _router("s3://logs/inference")["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in c["env"]}
    assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= names
    plain = _router(None)["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in plain and len(plain["volumeMounts"]) == 2


def test_the_reconciler_asks_for_the_sink_only_when_logging_is_on() -> None:
    on = deployment(logging={"sampleRate": 0.5, "sink": {"uri": "pvc://logs/x"}})
    off = deployment(logging={"sampleRate": 0, "sink": {"uri": "pvc://logs/x"}})
    assert build_table(on.spec, "v1", None, 0).logging is not None
    for md, sink in ((on, "pvc://logs/x"), (off, None)):
        _, result = run(md, observe([job("v1")], ["v1"]), 0)
        routers = [a for a in result.actions if isinstance(a, EnsureRouter)]
        assert [r.log_sink for r in routers] == [sink]
