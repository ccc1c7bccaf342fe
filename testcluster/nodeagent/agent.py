"""The node agent: registers the Node, keeps it Ready and runs the pods bound to it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import platform
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from testcluster.nodeagent import network
from testcluster.nodeagent.kube import ApiError, Informer, Kube
from testcluster.nodeagent.kubeletapi import KubeletApi
from testcluster.nodeagent.pods import PodRunner, now_iso
from testcluster.nodeagent.proxy import ServiceProxy

log = logging.getLogger("nodeagent")
HEARTBEAT_SECONDS = 10


def micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def memory_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


class Agent:
    def __init__(
        self,
        *,
        kubeconfig: Path,
        node_name: str,
        bridge: str,
        pod_cidr: str,
        service_cidr: str,
        domain: str,
        apiserver: str,
        state_dir: Path,
        venv: Path,
        service_proxy: bool = True,
    ):
        self.kube = Kube(kubeconfig)
        self.node_name = node_name
        self.pod_cidr = pod_cidr
        self.domain = domain
        self.state_dir = state_dir.resolve()
        self.venv = venv.absolute()
        self.network = network.Network(bridge, pod_cidr)
        self.host_ip = self.network.gateway
        self.kubernetes_ip = str(next(ipaddress.ip_network(service_cidr).hosts()))
        host, _, port = apiserver.rpartition(":")
        self.proxy = ServiceProxy(
            self.network.add_address,
            self.network.remove_address,
            (host, int(port)),
            node_ip=self.network.gateway,
        )
        self.service_proxy = service_proxy
        self.kubelet = KubeletApi(self.host_ip, self.state_dir, node_name, self.log_source)
        self.runners: dict[str, PodRunner] = {}
        self.services = Informer(self.kube, "/api/v1/services", self._on_service)
        self.slices = Informer(
            self.kube, "/apis/discovery.k8s.io/v1/endpointslices", self._on_slice
        )
        self.pods = Informer(
            self.kube, "/api/v1/pods", self._on_pod, fieldSelector=f"spec.nodeName={node_name}"
        )
        self.claims = Informer(self.kube, "/api/v1/persistentvolumeclaims", self._on_claim)
        self._dns_dirty = asyncio.Event()
        self._proxy_dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def log_source(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> tuple[Path, int, int | None, Callable[[], bool]] | None:
        """Where `kubectl logs` finds a container's current (or previous) run."""
        runner = self.runners.get(f"{namespace}/{pod}")
        if runner is None:  # deleted or run by an earlier agent: the whole file, if any
            found = sorted(self.state_dir.glob(f"pods/{namespace}_{pod}_*/{container}.log"))
            return (found[-1], 0, None, lambda: False) if found else None
        starts = runner.log_starts.get(container, [])
        path = runner.dir / f"{container}.log"
        if previous:
            return (path, starts[-2], starts[-1], lambda: False) if len(starts) > 1 else None
        if not starts:
            return None
        states = {c.name: c for c in runner.init + runner.main}

        def writing() -> bool:
            cs = states.get(container)
            return cs is not None and not runner.stopping and "terminated" not in cs.state

        return path, starts[-1], None, writing

    # ---- views for pods -----------------------------------------------------------------

    def all_services(self) -> list[dict[str, Any]]:
        return list(self.services.items.values())

    def services_in(self, namespace: str) -> list[dict[str, Any]]:
        return [s for s in self.services.items.values() if s["metadata"]["namespace"] == namespace]

    def headless_addresses(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for eps in self.slices.items.values():
            svc = (eps["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            if not svc:
                continue
            key = f"{eps['metadata']['namespace']}/{svc}"
            for endpoint in eps.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is not False:
                    out.setdefault(key, []).extend(endpoint.get("addresses", []))
        return out

    # ---- events -------------------------------------------------------------------------

    def _on_service(self, kind: str, obj: dict[str, Any]) -> None:
        self._dns_dirty.set()
        self._proxy_dirty.set()

    def _on_slice(self, kind: str, obj: dict[str, Any]) -> None:
        self.proxy.slices = dict(self.slices.items)
        self._dns_dirty.set()

    async def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        key = Informer.key(pod)
        runner = self.runners.get(key)
        if runner is not None and runner.uid != pod["metadata"]["uid"]:
            await self._forget(runner, grace=0)
            runner = None
        if kind == "DELETED":
            if runner is not None:
                await self._forget(runner, grace=0)
            return
        phase = (pod.get("status") or {}).get("phase")
        deleting = pod["metadata"].get("deletionTimestamp") is not None
        if runner is None:
            if deleting:
                self._spawn(self._delete_pod(pod))
                return
            if phase in ("Succeeded", "Failed"):
                return  # ran before this agent started; nothing to run
            runner = PodRunner(self, pod)
            self.runners[key] = runner
            runner.start()
            return
        runner.pod = pod
        runner.changed.set()  # another writer's condition (a readiness gate) may have changed
        if deleting and not runner.stopping:
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            self._spawn(self._graceful_delete(runner, float(grace)))

    async def _on_claim(self, kind: str, claim: dict[str, Any]) -> None:
        """A minimal provisioner: a pending claim gets a PV pre-bound to it whose hostPath is
        the directory its pods mount (`<state>/pvc/<ns>/<claim>`); the PV controller binds them."""
        meta, spec = claim["metadata"], claim.get("spec") or {}
        if kind == "DELETED" or meta.get("deletionTimestamp") or spec.get("volumeName"):
            return
        if (claim.get("status") or {}).get("phase", "Pending") != "Pending":
            return
        path = self.state_dir / "pvc" / meta["namespace"] / meta["name"]
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"pvc-{meta['uid']}",
                "annotations": {"pv.kubernetes.io/provisioned-by": "pilotage-nodeagent"},
            },
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": spec.get("storageClassName") or "",
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            await self.kube.post("/api/v1/persistentvolumes", volume)
            log.info(
                "provisioned %s for claim %s/%s",
                volume["metadata"]["name"],
                meta["namespace"],
                meta["name"],
            )
        except ApiError as exc:
            if exc.status != 409:
                log.warning(
                    "cannot provision claim %s/%s: %s", meta["namespace"], meta["name"], exc
                )

    async def _graceful_delete(self, runner: PodRunner, grace: float) -> None:
        await runner.terminate(grace)
        await runner.flush_status()
        await runner.stop_status()
        await self._delete_pod(runner.pod)
        self.runners.pop(runner.key, None)

    async def _forget(self, runner: PodRunner, grace: float) -> None:
        self.runners.pop(runner.key, None)
        await runner.terminate(grace)
        await runner.stop_status()

    async def _delete_pod(self, pod: dict[str, Any]) -> None:
        """Finish a deletion (gracePeriodSeconds=0, this uid only), retrying while the API
        server cannot be reached: a pod left Terminating would hold its namespace forever."""
        meta = pod["metadata"]
        for attempt in range(60):
            try:
                await self.kube.delete(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": meta["uid"]},
                    },
                )
                return
            except ApiError as exc:
                if exc.status in (404, 409):  # gone already, or another pod of that name
                    return
                log.warning("deleting pod %s/%s: %s", meta["namespace"], meta["name"], exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("deleting pod %s/%s: %s", meta["namespace"], meta["name"], exc)
            await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))

    # ---- node -----------------------------------------------------------------------------

    def node_status(self) -> dict[str, Any]:
        now = now_iso()
        resources = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory_kib()}Ki",
            "pods": "110",
            "ephemeral-storage": "20Gi",
        }
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": r,
                "message": m,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._since,
            }
            for t, r, m in (
                (
                    "MemoryPressure",
                    "KubeletHasSufficientMemory",
                    "node agent has sufficient memory available",
                ),
                ("DiskPressure", "KubeletHasNoDiskPressure", "node agent has no disk pressure"),
                (
                    "PIDPressure",
                    "KubeletHasSufficientPID",
                    "node agent has sufficient PID available",
                ),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "pilotage node agent is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._since,
            }
        )
        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
            ],
            # No Hostname address: the API server would dial it first (DNS) for pods/log.
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet.port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "pilotage node agent (pods as processes)",
                "containerRuntimeVersion": "process://0.1",
                "kubeletVersion": "v0.0.0-pilotage-nodeagent",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    platform.machine(), platform.machine()
                ),
            },
        }

    async def register(self) -> None:
        self._since = now_iso()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": arch,
                },
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
        }
        try:
            await self.kube.post("/api/v1/nodes", node)
        except ApiError as exc:
            if exc.status != 409:
                raise
        await self.kube.merge_patch(
            f"/api/v1/nodes/{self.node_name}/status", {"status": self.node_status()}
        )

    async def heartbeat(self) -> None:
        lease_path = (
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        )
        while True:
            try:
                spec = {
                    "holderIdentity": self.node_name,
                    "leaseDurationSeconds": 40,
                    "renewTime": micro_now(),
                }
                try:
                    await self.kube.merge_patch(lease_path, {"spec": spec})
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    node = await self.kube.get(f"/api/v1/nodes/{self.node_name}")
                    await self.kube.post(
                        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                        {
                            "apiVersion": "coordination.k8s.io/v1",
                            "kind": "Lease",
                            "metadata": {
                                "name": self.node_name,
                                "ownerReferences": [
                                    {
                                        "apiVersion": "v1",
                                        "kind": "Node",
                                        "name": self.node_name,
                                        "uid": node["metadata"]["uid"],
                                    }
                                ],
                            },
                            "spec": spec,
                        },
                    )
                await self.kube.merge_patch(
                    f"/api/v1/nodes/{self.node_name}/status", {"status": self.node_status()}
                )
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status == 404 and "nodes" in exc.message:
                    with contextlib.suppress(Exception):
                        await self.register()
                log.warning("heartbeat: %s", exc)
            except Exception as exc:
                log.warning("heartbeat: %s", exc)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    # ---- loops ----------------------------------------------------------------------------

    async def _dns_loop(self) -> None:
        while True:
            await self._dns_dirty.wait()
            await asyncio.sleep(0.05)
            self._dns_dirty.clear()
            for runner in list(self.runners.values()):
                try:
                    runner.write_dns()
                except OSError as exc:
                    log.warning("hosts of %s: %s", runner.key, exc)

    async def _proxy_loop(self) -> None:
        while True:
            await self._proxy_dirty.wait()
            await asyncio.sleep(0.05)
            self._proxy_dirty.clear()
            if not self.service_proxy:
                continue
            try:
                await self.proxy.sync(self.all_services())
            except Exception:
                log.exception("service proxy sync failed")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await asyncio.to_thread(network.cleanup, self.network.bridge, self.state_dir)
        await asyncio.to_thread(self.network.configure_bridge)
        try:
            await self.kubelet.start()
        except OSError as exc:  # kubectl logs will not work; pods still run
            log.warning("no kubelet API for pod logs: %s", exc)
        await self.register()
        tasks = [
            asyncio.create_task(self.heartbeat()),
            asyncio.create_task(self.services.run()),
            asyncio.create_task(self.slices.run()),
            asyncio.create_task(self.claims.run()),
            asyncio.create_task(self._dns_loop()),
            asyncio.create_task(self._proxy_loop()),
        ]
        await asyncio.wait_for(
            asyncio.gather(self.services.synced.wait(), self.slices.synced.wait()), 60
        )
        self._proxy_dirty.set()
        tasks.append(asyncio.create_task(self.pods.run()))
        log.info("node %s registered; running pods", self.node_name)
        await self._stopping.wait()
        log.info("stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(r.terminate(2) for r in list(self.runners.values())), return_exceptions=True
        )
        await asyncio.gather(
            *(r.stop_status() for r in list(self.runners.values())), return_exceptions=True
        )
        await self.proxy.close()
        await self.kubelet.stop()
        await self.kube.close()
        await asyncio.to_thread(network.cleanup, self.network.bridge, self.state_dir)
