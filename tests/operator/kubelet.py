"""A kubelet that runs the operator's containers as local processes.

What a cluster would do with the objects the operator creates, played with real
processes on 127.0.0.1: every Deployment gets one pod whose container command
(`pilotage serve ...`, `pilotage route ...`) really runs; a Job's container
(`pilotage train|profile ...`) runs to completion and its last stdout line becomes the
termination message. Volumes are materialised in a work directory (ConfigMap and Secret
files, emptyDir, a PVC as ``<pvc_root>/<claim>``), paths under mount points and
``--port``/``--host`` arguments are rewritten, and each (workload, container port) gets a
stable local port, like a Service's ClusterIP: `LocalAddresses` gives the operator those
addresses instead of cluster DNS names and pod IPs.

Not emulated: more than one pod per Deployment, restarts, probes after readiness,
resource limits, security contexts (checked statically by the PSS tests instead).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pilotage.operator import names
from pilotage.operator.kube import Obj
from pilotage.operator.platform import Addresses
from pilotage.operator.settings import OperatorSettings
from tests.operator.emulator import Cluster
from tests.operator.harness import cluster_call, record_job_result
from tests.support.procs import Process, free_port, pilotage

PORT_FLAGS = ("--port", "--admin-port")
HOST_FLAGS = ("--host", "--admin-host")


@dataclass
class LocalPod:
    namespace: str
    name: str
    workload: str
    process: Process
    probe_url: str | None
    ready: bool = False


class ContainerNotStartable(Exception):
    """A volume's ConfigMap or Secret does not exist yet (a real pod waits too)."""


class ProcessKubelet:
    """Runs Deployments' and Jobs' containers of one emulated cluster as local processes."""

    def __init__(self, cluster: Cluster, workdir: Path, pvc_root: Path):
        self.cluster = cluster
        self.workdir = workdir
        self.pvc_root = pvc_root
        self.pods: dict[tuple[str, str], LocalPod] = {}
        self.extra_args: dict[str, list[str]] = {}
        """Workload name → arguments appended to its container's (a test's debug flags)."""
        self._ports: dict[tuple[str, str, int], int] = {}
        self._ports_lock = threading.Lock()

    # ---- addresses ----------------------------------------------------------------------

    def port(self, namespace: str, workload: str, container_port: int) -> int:
        """The local port of a workload's container port, fixed at first use."""
        with self._ports_lock:
            key = (namespace, workload, container_port)
            if key not in self._ports:
                self._ports[key] = free_port()
            return self._ports[key]

    def pod(self, namespace: str, name: str) -> LocalPod:
        return self.pods[(namespace, name)]

    # ---- containers ---------------------------------------------------------------------

    def _volumes(self, namespace: str, pod_dir: Path, spec: Obj) -> dict[str, Path]:
        """mountPath → local directory for the (single) container's mounts."""
        local: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            where = pod_dir / "volumes" / volume["name"]
            if "persistentVolumeClaim" in volume:
                where = self.pvc_root / volume["persistentVolumeClaim"]["claimName"]
                where.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume or "secret" in volume:
                kind, ref = (
                    ("v1/configmaps", volume["configMap"]["name"])
                    if "configMap" in volume
                    else ("v1/secrets", volume["secret"]["secretName"])
                )
                obj = self.cluster.get(kind, namespace, ref)
                if obj is None:
                    raise ContainerNotStartable(f"{kind} {ref} does not exist")
                where.mkdir(parents=True, exist_ok=True)
                for key, value in (obj.get("data") or {}).items():
                    raw = base64.b64decode(value) if "secret" in volume else value.encode()
                    (where / key).write_bytes(raw)
            else:  # emptyDir
                where.mkdir(parents=True, exist_ok=True)
            local[volume["name"]] = where
        container = spec["containers"][0]
        return {m["mountPath"]: local[m["name"]] for m in container.get("volumeMounts") or []}

    def _command(
        self, namespace: str, workload: str, spec: Obj, mounts: dict[str, Path]
    ) -> tuple[list[str], dict[str, str]]:
        container = spec["containers"][0]
        assert container.get("command") == ["pilotage"], container.get("command")
        by_length = sorted(mounts, key=len, reverse=True)

        def local_path(value: str) -> str:
            for mount in by_length:
                if value == mount or value.startswith(mount + "/"):
                    return str(mounts[mount]) + value[len(mount) :]
            return value

        args = [local_path(a) for a in container.get("args") or []]
        args += self.extra_args.get(workload, [])
        for i, flag in enumerate(args[:-1]):
            if flag in PORT_FLAGS:
                args[i + 1] = str(self.port(namespace, workload, int(args[i + 1])))
            elif flag in HOST_FLAGS:
                args[i + 1] = "127.0.0.1"
        env = {
            e["name"]: local_path(e["value"]) for e in container.get("env") or [] if "value" in e
        }
        if "PILOTAGE_PVC_ROOT" in env:
            env["PILOTAGE_PVC_ROOT"] = str(self.pvc_root)
        return pilotage(*args), env

    def _probe_url(self, namespace: str, workload: str, spec: Obj) -> str | None:
        container = spec["containers"][0]
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        if probe is None:
            return None
        port = probe["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
        return f"http://127.0.0.1:{self.port(namespace, workload, int(port))}{probe['path']}"

    # ---- Deployments --------------------------------------------------------------------

    async def _start_pod(self, dep: Obj) -> None:
        meta, template = dep["metadata"], dep["spec"]["template"]
        namespace, workload = meta["namespace"], meta["name"]
        pod_name = f"{workload}-pod"
        pod_dir = self.workdir / pod_name
        try:
            mounts = self._volumes(namespace, pod_dir, template["spec"])
        except ContainerNotStartable:
            return
        argv, env = self._command(namespace, workload, template["spec"], mounts)
        process = Process(argv, pod_dir / "log.txt", env)
        self.pods[(namespace, pod_name)] = LocalPod(
            namespace,
            pod_name,
            workload,
            process,
            self._probe_url(namespace, workload, template["spec"]),
        )
        owner = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": workload,
            "uid": meta["uid"],
            "controller": True,
        }
        pod = {
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [owner],
            },
            "spec": template["spec"],
        }
        await cluster_call(self.cluster, "POST", f"/api/v1/namespaces/{namespace}/pods", pod)

    async def _probe(self, session: aiohttp.ClientSession, pod: LocalPod) -> None:
        if not pod.process.alive():
            raise RuntimeError(f"pod {pod.name} exited:\n{pod.process.log()[-3000:]}")
        if pod.probe_url is not None:
            try:
                async with session.get(pod.probe_url, timeout=aiohttp.ClientTimeout(1)) as r:
                    if r.status != 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                return
        pod.ready = True
        await cluster_call(
            self.cluster,
            "PATCH",
            f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status",
            {
                "status": {
                    "phase": "Running",
                    "podIP": "127.0.0.1",
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
            },
        )

    async def _mark_deployment(self, dep: Obj, ready: int) -> None:
        meta = dep["metadata"]
        status = dep.get("status") or {}
        if status.get("observedGeneration") == meta["generation"] and (
            status.get("readyReplicas") == ready
        ):
            return
        await cluster_call(
            self.cluster,
            "PATCH",
            f"/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}/status",
            {
                "status": {
                    "observedGeneration": meta["generation"],
                    "replicas": 1,
                    "readyReplicas": ready,
                    "updatedReplicas": 1,
                    "availableReplicas": ready,
                }
            },
        )

    async def _stop_pod(self, pod: LocalPod) -> None:
        await asyncio.to_thread(pod.process.stop)
        del self.pods[(pod.namespace, pod.name)]
        if self.cluster.get("v1/pods", pod.namespace, pod.name) is not None:
            await cluster_call(
                self.cluster, "DELETE", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
            )

    async def sync(self, session: aiohttp.ClientSession) -> None:
        deployments = {
            (d["metadata"]["namespace"], d["metadata"]["name"]): d
            for d in self.cluster.list("apps/v1/deployments")
        }
        for pod in list(self.pods.values()):
            if (pod.namespace, pod.workload) not in deployments:
                await self._stop_pod(pod)
        for (namespace, name), dep in deployments.items():
            pod = self.pods.get((namespace, f"{name}-pod"))
            if pod is None:
                await self._start_pod(dep)
            elif not pod.ready:
                await self._probe(session, pod)
            await self._mark_deployment(dep, 1 if pod is not None and pod.ready else 0)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await self.sync(session)
                await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ProcessKubelet]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.gather(*(asyncio.to_thread(p.process.stop) for p in self.pods.values()))
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    # ---- Jobs ---------------------------------------------------------------------------

    async def run_job(self, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        """Run a Job's container to completion; record its pod and the Job's outcome.
        Returns the exit code and the summary (the termination message)."""
        job = self.cluster.get("batch/v1/jobs", namespace, name)
        assert job is not None, f"no Job {name}"
        spec = job["spec"]["template"]["spec"]
        pod_dir = self.workdir / name
        mounts = self._volumes(namespace, pod_dir, spec)
        argv, env = self._command(namespace, name, spec, mounts)
        log_path = pod_dir / "log.txt"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env={**os.environ, **env},
            )
            stdout, _ = await proc.communicate()
        lines = stdout.decode(errors="replace").strip().splitlines()
        message = lines[-1] if lines else ""
        code = proc.returncode or 0
        summary = await record_job_result(self.cluster, namespace, name, message, code)
        assert summary is not None, f"{name}: no JSON summary; log:\n{log_path.read_text()}"
        return code, summary


class LocalAddresses(Addresses):
    """The operator's view of the network when pods are local processes."""

    def __init__(self, settings: OperatorSettings, kubelet: ProcessKubelet):
        super().__init__(settings)
        self.kubelet = kubelet

    def server_url(self, deployment: str, version: str, namespace: str) -> str:
        workload = names.server_name(deployment, version)  # the Service has the same name
        return (
            f"http://127.0.0.1:{self.kubelet.port(namespace, workload, self.settings.server_port)}"
        )

    def pod_url(self, pod: Obj, port: int) -> str:
        meta = pod["metadata"]
        local = self.kubelet.pod(meta["namespace"], meta["name"])
        return f"http://127.0.0.1:{self.kubelet.port(local.namespace, local.workload, port)}"
