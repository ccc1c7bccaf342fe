"""The restricted Pod Security Standard (Kubernetes 1.30), as the chart's tests apply it.

Every control of the baseline and restricted profiles of
https://kubernetes.io/docs/concepts/security/pod-security-standards/ that a pod spec can
break, checked on the pod template of each workload the chart renders. Returns one line
per violation; an empty list means the pod would be admitted in a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

WORKLOADS_WITH_TEMPLATE = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
)
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})

Obj = Mapping[str, Any]


def pod_template(obj: Obj) -> tuple[Obj, Obj] | None:
    """(pod metadata, pod spec) of a Pod, a workload with a template, or a CronJob."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return obj.get("metadata") or {}, spec
    if kind in WORKLOADS_WITH_TEMPLATE:
        template = spec.get("template") or {}
        return template.get("metadata") or {}, template.get("spec") or {}
    if kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return template.get("metadata") or {}, template.get("spec") or {}
    return None


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _security_context_problems(where: str, sc: Obj) -> Iterator[str]:
    """Controls that apply alike to the pod's and each container's securityContext."""
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        yield f"{where}: windowsOptions.hostProcess must not be true"
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        yield f"{where}: seLinuxOptions.type {selinux['type']!r} not allowed"
    if selinux.get("user") or selinux.get("role"):
        yield f"{where}: seLinuxOptions.user and .role must be unset"
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_ALLOWED:
        yield f"{where}: appArmorProfile.type {apparmor!r} not allowed"
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in SECCOMP_ALLOWED:
        yield f"{where}: seccompProfile.type {seccomp!r} not allowed"
    if sc.get("runAsUser") == 0:
        yield f"{where}: runAsUser must not be 0"
    if sc.get("runAsNonRoot") is False:
        yield f"{where}: runAsNonRoot must not be false"


def violations(pod_meta: Obj, spec: Obj) -> list[str]:
    problems: list[str] = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"spec.{flag} must not be true")
    pod_sc = spec.get("securityContext") or {}
    problems += _security_context_problems("pod securityContext", pod_sc)
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: {sorted(kinds)} not allowed")
    for key, value in (pod_meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            problems.append(f"annotation {key}={value} not allowed")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type") in SECCOMP_ALLOWED
    containers = list(_containers(spec))
    if not containers:
        problems.append("the pod has no containers")
    for c in containers:
        where = f"container {c.get('name')}"
        sc = c.get("securityContext") or {}
        problems += _security_context_problems(where, sc)
        if sc.get("privileged"):
            problems.append(f"{where}: privileged must not be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount must be Default")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where}: capabilities.drop must include ALL")
        added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            problems.append(f"{where}: capabilities.add {sorted(added)} not allowed")
        if not (sc.get("runAsNonRoot") is True or (pod_non_root and "runAsNonRoot" not in sc)):
            problems.append(f"{where}: runAsNonRoot must be true (pod or container)")
        container_seccomp = (sc.get("seccompProfile") or {}).get("type")
        if not (container_seccomp in SECCOMP_ALLOWED or (pod_seccomp and not container_seccomp)):
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']} not allowed")
    return problems


def restricted_violations(obj: Obj) -> list[str]:
    """Violations of the pod template in ``obj`` (empty for objects without pods)."""
    found = pod_template(obj)
    if found is None:
        return []
    name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
    return [f"{name}: {v}" for v in violations(*found)]
