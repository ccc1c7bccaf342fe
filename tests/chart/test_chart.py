"""The chart, rendered by the real `helm` with the defaults and each documented variant:
lint, official Kubernetes 1.30 schemas, the restricted Pod Security Standard, settings the
operator accepts, and templates Argo CD can render (no lookup, nothing random)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pilotage.operator.settings import OperatorSettings, env_name
from tests.chart.pss import pod_template, restricted_violations
from tests.chart.render import CHART, NAMESPACE, Obj, helm, of_kind, render, variants

pytestmark = pytest.mark.xdist_group("chart")

KUBERNETES_VERSION = "1.30.0"
VARIANTS = variants()
NOT_IN_KUBERNETES_SCHEMAS = {"kopf.dev/v1", "monitoring.coreos.com/v1"}


def chart_crds() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) → CRD of every kind the chart's crds/ defines."""
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            out[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = crd
    return out


def test_variants_are_documented_in_operations_md() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name in VARIANTS:
        if name != "default":
            assert f"deploy/values/{name}.yaml" in text, name


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_helm_lint_strict(name: str) -> None:
    done = helm("lint", "--strict", str(CHART), *VARIANTS[name], check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_object_passes_the_kubernetes_schemas(name: str) -> None:
    objects = render(*VARIANTS[name])
    assert {"Deployment", "ServiceAccount", "ConfigMap"} <= {o["kind"] for o in objects}
    problems = []
    for obj in objects:
        if obj["apiVersion"] in NOT_IN_KUBERNETES_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {path}: {exc.message}")
    assert problems == []


def test_chart_crds_pass_the_kubernetes_schemas() -> None:
    for crd in chart_crds().values():
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_custom_objects_match_the_chart_crds(name: str) -> None:
    crds = chart_crds()
    for obj in render(*VARIANTS[name]):
        if obj["apiVersion"] != "kopf.dev/v1":
            continue
        crd = crds[(obj["apiVersion"], obj["kind"])]
        namespaced = crd["spec"]["scope"] == "Namespaced"
        assert ("namespace" in obj["metadata"]) == namespaced, obj
        (version,) = crd["spec"]["versions"]
        jsonschema.validate(obj, version["schema"]["openAPIV3Schema"])


SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    # The fields of monitoring.coreos.com/v1 ServiceMonitor the chart writes, with the
    # Prometheus Operator CRD's types (its full schema is not available offline).
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$",
                            },
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$",
                            },
                        },
                    },
                },
            },
        }
    },
}


def test_service_monitor_selects_the_services_the_operator_creates() -> None:
    from pilotage.operator import build, names
    from pilotage.operator.settings import OperatorSettings

    objects = render("--set", "metrics.serviceMonitor.enabled=true")
    (monitor,) = of_kind(objects, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    owner = {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1"},
    }
    service = build.build_router_service("iris", owner, OperatorSettings())
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert labels[names.LABEL_ROLE] == names.ROLE_ROUTER
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_pod_meets_the_restricted_pod_security_standard(name: str) -> None:
    objects = render(*VARIANTS[name])
    with_pods = [o for o in objects if pod_template(o) is not None]
    assert with_pods, "the chart renders at least the operator Deployment"
    assert [v for o in with_pods for v in restricted_violations(o)] == []


def test_the_pss_check_catches_what_it_must() -> None:
    (deployment,) = of_kind(render(), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    breakages = {
        "hostNetwork": lambda: spec.update(hostNetwork=True),
        "hostPath": lambda: spec["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "escalation": lambda: container["securityContext"].update(allowPrivilegeEscalation=True),
        "capabilities": lambda: container["securityContext"]["capabilities"].update(
            add=["SYS_ADMIN"]
        ),
        "root": lambda: container["securityContext"].update(runAsUser=0),
        "seccomp": lambda: container["securityContext"]["seccompProfile"].update(type="Unconfined"),
        "hostPort": lambda: container["ports"][0].update(hostPort=8081),
        "privileged": lambda: container["securityContext"].update(privileged=True),
    }
    for what, breaks in breakages.items():
        (fresh,) = of_kind(yaml.safe_load_all(yaml.safe_dump_all(render())), "Deployment")
        spec = fresh["spec"]["template"]["spec"]
        container = spec["containers"][0]
        breaks()
        assert restricted_violations(fresh), what


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_root_filesystems_are_read_only_with_writable_paths_on_empty_dirs(name: str) -> None:
    for obj in render(*VARIANTS[name]):
        found = pod_template(obj)
        if found is None:
            continue
        spec = found[1]
        empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
            assert mounts.get("/tmp") in empty_dirs, "HOME and temp files go to an emptyDir"


def settings_env(objects: list[Obj]) -> dict[str, str]:
    (configmap,) = [
        o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-settings")
    ]
    data: dict[str, str] = configmap["data"]
    return data


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_settings_are_exactly_the_operator_variables_and_load(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(*VARIANTS[name])
    env = settings_env(objects)
    known = {env_name(f) for f in OperatorSettings.model_fields}
    assert set(env) <= known, f"not operator settings: {set(env) - known}"
    for key in [k for k in __import__("os").environ if k.startswith("PILOTAGE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = OperatorSettings()  # raises on any value the operator would refuse
    (deployment,) = operator_deployments(objects)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"][0]["configMapRef"]["name"].endswith("-settings")
    assert container["ports"][0]["containerPort"] == settings.liveness_port
    peering = of_kind(objects, "ClusterKopfPeering") + of_kind(objects, "KopfPeering")
    if settings.standalone:
        assert peering == []
    else:
        assert {p["metadata"]["name"] for p in peering} == {settings.peering_name}
        if settings.clusterwide:
            assert [p["kind"] for p in peering] == ["ClusterKopfPeering"]
        else:
            assert sorted(p["metadata"]["namespace"] for p in peering) == sorted(
                settings.namespaces
            )


def test_s3_variant_reaches_the_operator_settings() -> None:
    env = settings_env(render(*VARIANTS["s3"]))
    assert env[env_name("artifact_uri")] == "s3://ml-artifacts/pilotage"
    assert env[env_name("s3_secret")] == "pilotage-s3"
    assert env[env_name("s3_endpoint")].startswith("http://minio")
    assert env[env_name("analysis_interval")] == "30s"
    assert env[env_name("analysis_min_requests")] == "100"


def test_images_tags_and_digests() -> None:
    env = settings_env(render("--set", "images.tag=1.2.3"))
    assert env[env_name("server_image")] == "ghcr.io/pilotage-dev/pilotage-server:1.2.3"
    assert env[env_name("router_image")] == env[env_name("server_image")]
    digest = "sha256:" + "a" * 64
    objects = render("--set", f"images.trainer.digest={digest}", "--set", "images.tag=1.2.3")
    assert settings_env(objects)[env_name("trainer_image")].endswith(f"pilotage-trainer@{digest}")
    (deployment,) = of_kind(render(), "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/pilotage-dev/pilotage-operator:0.1.0"


def operator_deployments(objects: list[Obj]) -> list[Obj]:
    return [
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"].endswith("-operator")
    ]


def test_operator_deployment_is_one_recreated_replica() -> None:
    (deployment,) = of_kind(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--set", "watch.clusterWide=false"), "minItems"),
        (("--set", "artifacts.type=s3"), "minLength"),
        (("--set", "artifacts.type=gcs"), "artifacts/type"),
        (("--set", "operator.logLevel=loud"), "operator/logLevel"),
        (("--set", "unknownKey=1"), "unknownKey"),
        (("--set", "analysis.interval=soon"), "analysis/interval"),
        (("--set", "workloads.routerAdminPort=70000"), "routerAdminPort"),
        (("--set", "dashboard.port=80"), "dashboard/port"),
        (("--set", "dashboard.readOnly=maybe"), "dashboard/readOnly"),
        (("--set", "operator.replicas=2", "--set", "operator.peering.enabled=false"), "peering"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(args: tuple[str, ...], complaint: str) -> None:
    done = helm("template", "x", str(CHART), *args, check=False)
    assert done.returncode != 0
    assert complaint in done.stderr, done.stderr


def test_every_value_is_documented_in_values_yaml() -> None:
    """Each leaf has a comment right above it, or sits under a commented parent
    (e.g. `resources.requests.cpu` under the comment of `resources`)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented_parents: list[tuple[int, bool]] = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9-]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while documented_parents and documented_parents[-1][0] >= indent:
            documented_parents.pop()
        commented = i > 0 and lines[i - 1].strip().startswith("#")
        inherited = any(doc for _, doc in documented_parents)
        if rest.strip():
            assert commented or inherited, f"values.yaml:{i + 1}: {key} has no comment"
        documented_parents.append((indent, commented))


def test_schema_describes_every_leaf() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        for key, child in (node.get("properties") or {}).items():
            if "properties" in child:
                walk(child, f"{path}.{key}")
            else:
                assert child.get("description"), f"{path}.{key} has no description"

    walk(schema, "")


def test_templates_use_no_lookup_and_nothing_random() -> None:
    forbidden = re.compile(
        r"\b(lookup|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|randInt|uuidv4|"
        r"genCA|genPrivateKey|genSelfSignedCert|genSignedCert|now|date|dateInZone)\b"
    )
    for template in sorted((CHART / "templates").iterdir()):
        for n, line in enumerate(template.read_text().splitlines(), 1):
            for action in re.findall(r"{{(.*?)}}", line):
                assert not forbidden.search(action), f"{template.name}:{n}: {action}"


def test_rendering_is_deterministic() -> None:
    args = VARIANTS["namespaced"]
    first = helm("template", "r", str(CHART), *args).stdout
    second = helm("template", "r", str(CHART), *args).stdout
    assert first == second
