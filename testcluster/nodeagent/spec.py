"""Pure parts of the node agent: images, commands, environment, hosts files, pod status.

No I/O and no clock reads here: callers pass in the objects they fetched and the time.
"""

from __future__ import annotations

import base64
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What the Dockerfile's final stages declare: ENTRYPOINT ["pilotage"], CMD per target,
# USER 10001:10001, WORKDIR /tmp and the runtime stage's ENV.
IMAGE_TARGETS = {
    "operator": ["operator"],
    "server": ["serve", "--help"],
    "trainer": ["train", "--help"],
}
IMAGE_USER = 10001
IMAGE_WORKDIR = "/tmp"
IMAGE_ENV = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PIP_NO_CACHE_DIR": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "HOME": "/tmp",
}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VENV_COMMANDS = ("pilotage", "python", "python3")


class ImageNotRunnable(Exception):
    """The image is not one of ours: nothing can run it here (images are never pulled)."""


class ConfigError(Exception):
    """The container cannot be configured (a missing Secret key, a bad fieldRef...)."""


def image_target(image: str) -> str:
    """`operator`, `server` or `trainer` for an image of ours; ImageNotRunnable otherwise."""
    for target in IMAGE_TARGETS:
        if fnmatch.fnmatchcase(image, f"*/pilotage-{target}:*") or fnmatch.fnmatchcase(
            image, f"*/pilotage-{target}@*"
        ):
            return target
    raise ImageNotRunnable(
        f'image "{image}" cannot run on this node: images are not pulled; only '
        "*/pilotage-operator|server|trainer:* images run (from the project's virtualenv)"
    )


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: $(NAME) of a defined variable is replaced, $$ escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, text)


def argv_for(container: dict[str, Any], venv: Path, env: dict[str, str]) -> list[str]:
    """The process argv: the image's entrypoint/CMD unless overridden, venv binaries mapped."""
    target = image_target(container.get("image", ""))
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = [expand(a, env) for a in command] + [expand(a, env) for a in (args or [])]
    elif args is not None:
        argv = ["pilotage"] + [expand(a, env) for a in args]
    else:
        argv = ["pilotage", *IMAGE_TARGETS[target]]
    if argv and argv[0] in VENV_COMMANDS:
        argv[0] = str(venv / "bin" / argv[0])
    return argv


def _field(obj: dict[str, Any], path: str) -> str | None:
    """A fieldRef's value: metadata.name, metadata.labels['x'], status.podIP, spec.nodeName..."""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str(obj.get("metadata", {}).get(m.group(1), {}).get(m.group(2), ""))
    allowed = {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.podIP",
        "status.hostIPs",
        "status.podIPs",
    }
    if path not in allowed:
        return None
    if path in ("status.hostIPs", "status.podIPs"):
        return ",".join(i["ip"] for i in obj.get("status", {}).get(path.split(".")[1], []))
    value: Any = obj
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, str) else ""


def field_ref(pod: dict[str, Any], path: str) -> str:
    value = _field(pod, path)
    if value is None:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return value


def resource_ref(container: dict[str, Any], resource: str) -> str:
    """A resourceFieldRef as declared (the divisor is not applied)."""
    kind, _, name = resource.partition(".")
    quantity = (container.get("resources") or {}).get(kind, {}).get(name)
    return "0" if quantity is None else str(quantity)


@dataclass
class Sources:
    """ConfigMaps and Secrets of the pod's namespace, by name (None: it does not exist)."""

    configmaps: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def configmap(self, name: str) -> dict[str, str] | None:
        cm = self.configmaps.get(name)
        if cm is None:
            return None
        data = dict(cm.get("data") or {})
        for key, value in (cm.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value).decode(errors="replace")
        return data

    def secret(self, name: str) -> dict[str, str] | None:
        secret = self.secrets.get(name)
        if secret is None:
            return None
        return {
            k: base64.b64decode(v).decode(errors="replace")
            for k, v in (secret.get("data") or {}).items()
        }


def referenced(pod: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's env, envFrom and volumes read."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec", {})
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for var in container.get("env", []):
            source = var.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                configmaps.add(source["configMapKeyRef"]["name"])
            if "secretKeyRef" in source:
                secrets.add(source["secretKeyRef"]["name"])
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"]["name"])
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            configmaps.add(volume["configMap"]["name"])
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources", []):
            if "configMap" in source:
                configmaps.add(source["configMap"]["name"])
            if "secret" in source:
                secrets.add(source["secret"]["name"])
    return configmaps, secrets


def service_env(services: list[dict[str, Any]]) -> dict[str, str]:
    """Docker-link style variables for Services with a ClusterIP (enableServiceLinks)."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        ip = svc.get("spec", {}).get("clusterIP")
        ports = svc.get("spec", {}).get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = svc["metadata"]["name"].upper().replace("-", "_")
        first = ports[0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first["port"])
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            proto = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
            prefix = f"{name}_PORT_{port['port']}_{proto}"
            env[prefix] = f"{proto.lower()}://{ip}:{port['port']}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    sources: Sources,
    base: dict[str, str],
) -> dict[str, str]:
    """The container's environment: image ENV, `base` (service links, PATH...), envFrom, env."""
    env = {**IMAGE_ENV, **base}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            data = sources.configmap(ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref["name"]}" not found')
        elif "secretRef" in source:
            ref = source["secretRef"]
            data = sources.secret(ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref["name"]}" not found')
        else:
            continue
        for key, value in data.items():
            env[prefix + key] = value
    for var in container.get("env", []):
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_ref(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            env[name] = resource_ref(container, ref["resource"])
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            is_cm = "configMapKeyRef" in source
            ref = source["configMapKeyRef" if is_cm else "secretKeyRef"]
            kind = "configmap" if is_cm else "secret"
            data = sources.configmap(ref["name"]) if is_cm else sources.secret(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                if data is None:
                    raise ConfigError(f'{kind} "{ref["name"]}" not found')
                raise ConfigError(
                    f"couldn't find key {ref['key']} in {kind.capitalize()} {pod['metadata']['namespace']}/{ref['name']}"
                )
            env[name] = data[ref["key"]]
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


# ---- DNS -----------------------------------------------------------------------------


def hosts_file(
    pod_ip: str,
    hostname: str,
    namespace: str,
    services: list[dict[str, Any]],
    headless: dict[str, list[str]],
    domain: str,
    subdomain: str = "",
    host_aliases: list[dict[str, Any]] | None = None,
) -> str:
    """/etc/hosts of a pod: its own name (with its subdomain's FQDN), spec.hostAliases and
    every Service (headless: their ready endpoints)."""
    own = f"{hostname}.{subdomain}.{namespace}.svc.{domain}\t{hostname}" if subdomain else hostname
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{own}",
        *(
            f"{a['ip']}\t{' '.join(a.get('hostnames') or [])}"
            for a in host_aliases or []
            if a.get("ip")
        ),
    ]
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        meta = svc["metadata"]
        name, ns = meta["name"], meta["namespace"]
        names = [f"{name}.{ns}.svc.{domain}", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == namespace:
            names.append(name)
        ip = svc.get("spec", {}).get("clusterIP")
        if svc.get("spec", {}).get("type") == "ExternalName":
            continue
        addresses = [ip] if ip and ip != "None" else headless.get(f"{ns}/{name}", [])
        for address in addresses:
            lines.append(f"{address}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str, domain: str) -> str:
    return (
        f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
        "nameserver 127.0.0.1\n"
        "options ndots:5 timeout:1 attempts:1\n"
    )


# ---- status --------------------------------------------------------------------------


@dataclass
class ContainerState:
    """What the agent knows of one container; `status()` renders the API object."""

    name: str
    image: str
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    pid: int | None = None
    final: bool = False
    """Terminated and will not be started again."""
    startup_pending: bool = False
    """Running, but its startupProbe has not passed yet."""

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": "running" in self.state and not self.startup_pending,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.pid is not None:
            out["containerID"] = f"process://{self.pid}"
        return out


def _condition(
    kind: str, ok: bool, now: str, previous: dict[str, dict[str, Any]], reason: str = ""
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(kind)
    since = (
        old["lastTransitionTime"]
        if old and old.get("status") == status and old.get("lastTransitionTime")
        else now
    )
    cond: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if reason and not ok:
        cond["reason"] = reason
    return cond


def pod_phase(init: list[ContainerState], main: list[ContainerState], init_failed: bool) -> str:
    if init_failed:
        return "Failed"
    if any(not c.final for c in init):
        return "Pending"
    if any("waiting" in c.state and not c.last_state for c in main):
        return "Pending"
    if all(c.final for c in main):
        codes = [c.state.get("terminated", {}).get("exitCode", 1) for c in main]
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"
    return "Running"


OWN_CONDITIONS = {
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
}


def pod_status(
    *,
    init: list[ContainerState],
    main: list[ContainerState],
    init_failed: bool,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    now: str,
    previous: dict[str, Any],
    message: str | None = None,
    reason: str | None = None,
    current: list[dict[str, Any]] | None = None,
    readiness_gates: list[str] | None = None,
) -> dict[str, Any]:
    """The pod's status subresource (phase, conditions, container statuses, IPs).

    `current` are the conditions the pod has now: those of other writers (readiness gates,
    DisruptionTarget...) are kept, and Ready also needs every `readiness_gates` type True.
    """
    phase = pod_phase(init, main, init_failed)
    prev = {c["type"]: c for c in previous.get("conditions", []) if "type" in c}
    foreign = [c for c in current or [] if c.get("type") not in OWN_CONDITIONS]
    gates_ok = all(
        any(c.get("type") == gate and c.get("status") == "True" for c in foreign)
        for gate in readiness_gates or []
    )
    initialized = all(c.final and c.state.get("terminated", {}).get("exitCode") == 0 for c in init)
    containers_ready = bool(main) and all(c.ready for c in main) and phase == "Running"
    ready = containers_ready and gates_ok
    not_ready_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    if containers_ready and not gates_ok:
        not_ready_reason = "ReadinessGatesNotReady"
    conditions = [
        _condition("PodReadyToStartContainers", pod_ip is not None, now, prev),
        _condition("Initialized", initialized, now, prev, "ContainersNotInitialized"),
        _condition("Ready", ready, now, prev, not_ready_reason),
        _condition(
            "ContainersReady",
            containers_ready,
            now,
            prev,
            "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady",
        ),
        _condition("PodScheduled", True, now, prev),
        *foreign,
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [c.status() for c in main],
    }
    if init:
        status["initContainerStatuses"] = [c.status() for c in init]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if message is not None:
        status["message"] = message
    if reason is not None:
        status["reason"] = reason
    return status


def termination_message(written: bytes, log_tail: bytes, exit_code: int, policy: str) -> str:
    """terminationMessagePath's content (4096 bytes at most), or the log's tail under
    FallbackToLogsOnError when the container failed and wrote no message."""
    text = written[:4096].decode(errors="replace")
    if not text.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
        lines = log_tail.decode(errors="replace").splitlines()[-80:]
        text = "\n".join(lines)[-2048:]
    return text


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def backoff_seconds(restarts: int) -> float:
    """1 s, 2 s, 4 s ... capped at 30 s (the kubelet: 10 s doubling to 5 min)."""
    return float(min(30, 2 ** max(0, restarts - 1)))
