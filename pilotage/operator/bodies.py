"""The Kubernetes bodies the operator builds, as typed dicts, so that mypy checks every key
and value `build.py` writes (a misspelt `mountPath`, a port given as text, a Job without a
template fail the type check, not the API server at run time).

Only the fields Pilotage writes are declared; the names and shapes are the Kubernetes API's
(core/v1, apps/v1, batch/v1). They stay plain dicts at run time.
"""

from __future__ import annotations

from typing import Literal, Required, TypedDict

PortProtocol = Literal["TCP", "UDP", "SCTP"]
Quantities = dict[str, str | int | float]


# ---- metadata ---------------------------------------------------------------------------


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]


class LabelSelector(TypedDict):
    matchLabels: dict[str, str]


# ---- pods ---------------------------------------------------------------------------------


class SeccompProfile(TypedDict):
    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]


class PodSecurityContext(TypedDict, total=False):
    runAsNonRoot: bool
    runAsUser: int
    runAsGroup: int
    fsGroup: int
    seccompProfile: SeccompProfile


class Capabilities(TypedDict, total=False):
    add: list[str]
    drop: list[str]


class SecurityContext(TypedDict, total=False):
    allowPrivilegeEscalation: bool
    capabilities: Capabilities
    readOnlyRootFilesystem: bool
    runAsNonRoot: bool
    seccompProfile: SeccompProfile


class SecretKeySelector(TypedDict, total=False):
    name: Required[str]
    key: Required[str]
    optional: bool


class EnvVarSource(TypedDict, total=False):
    secretKeyRef: SecretKeySelector


class EnvVar(TypedDict, total=False):
    name: Required[str]
    value: str
    valueFrom: EnvVarSource


class VolumeMount(TypedDict, total=False):
    name: Required[str]
    mountPath: Required[str]
    readOnly: bool


class KeyToPath(TypedDict):
    key: str
    path: str


class EmptyDirVolumeSource(TypedDict, total=False):
    medium: str
    sizeLimit: str


class ConfigMapVolumeSource(TypedDict, total=False):
    name: Required[str]
    defaultMode: int
    items: list[KeyToPath]


class SecretVolumeSource(TypedDict, total=False):
    secretName: Required[str]
    defaultMode: int
    items: list[KeyToPath]
    optional: bool


class PersistentVolumeClaimVolumeSource(TypedDict, total=False):
    claimName: Required[str]
    readOnly: bool


class Volume(TypedDict, total=False):
    name: Required[str]
    emptyDir: EmptyDirVolumeSource
    configMap: ConfigMapVolumeSource
    secret: SecretVolumeSource
    persistentVolumeClaim: PersistentVolumeClaimVolumeSource


class ContainerPort(TypedDict):
    name: str
    containerPort: int
    protocol: PortProtocol


class HTTPGetAction(TypedDict):
    path: str
    port: str | int


class Probe(TypedDict, total=False):
    httpGet: Required[HTTPGetAction]
    initialDelaySeconds: int
    periodSeconds: int
    failureThreshold: int


class ResourceRequirements(TypedDict, total=False):
    requests: Quantities
    limits: Quantities


class Container(TypedDict, total=False):
    name: Required[str]
    image: Required[str]
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"]
    command: list[str]
    args: list[str]
    env: list[EnvVar]
    ports: list[ContainerPort]
    resources: ResourceRequirements
    securityContext: SecurityContext
    volumeMounts: list[VolumeMount]
    terminationMessagePath: str
    terminationMessagePolicy: Literal["File", "FallbackToLogsOnError"]
    readinessProbe: Probe
    livenessProbe: Probe


class PodSpec(TypedDict, total=False):
    automountServiceAccountToken: bool
    securityContext: PodSecurityContext
    containers: Required[list[Container]]
    volumes: list[Volume]
    serviceAccountName: str
    restartPolicy: Literal["Always", "OnFailure", "Never"]


class PodTemplateSpec(TypedDict):
    metadata: ObjectMeta
    spec: PodSpec


# ---- workloads ----------------------------------------------------------------------------


class JobSpec(TypedDict, total=False):
    backoffLimit: int
    ttlSecondsAfterFinished: int
    activeDeadlineSeconds: int
    template: Required[PodTemplateSpec]


class Job(TypedDict):
    apiVersion: Literal["batch/v1"]
    kind: Literal["Job"]
    metadata: ObjectMeta
    spec: JobSpec


class DeploymentSpec(TypedDict):
    replicas: int
    selector: LabelSelector
    template: PodTemplateSpec


class Deployment(TypedDict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec


# ---- services, configuration, events ---------------------------------------------------


class ServicePort(TypedDict):
    name: str
    port: int
    targetPort: str | int
    protocol: PortProtocol


class ServiceSpec(TypedDict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    selector: dict[str, str]
    ports: list[ServicePort]


class Service(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec


class ConfigMap(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ConfigMap"]
    metadata: ObjectMeta
    data: dict[str, str]


class Secret(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Secret"]
    type: str
    metadata: ObjectMeta
    stringData: dict[str, str]


class ObjectReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    namespace: str
    uid: str
    resourceVersion: str


class EventSource(TypedDict):
    component: str


class Event(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Event"]
    metadata: ObjectMeta
    involvedObject: ObjectReference
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    source: EventSource
    reportingComponent: str
    reportingInstance: str
    firstTimestamp: str
    lastTimestamp: str
    count: int
    action: str
