"""One pod on this node: its network, volumes, containers, probes, restarts and status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from testcluster.nodeagent import network, spec
from testcluster.nodeagent.kube import ApiError
from testcluster.nodeagent.spec import ConfigError, ContainerState, ImageNotRunnable

REPO = Path(__file__).resolve().parents[2]  # the checkout our images run from

if TYPE_CHECKING:
    from testcluster.nodeagent.agent import Agent

log = logging.getLogger("nodeagent.pods")
LAUNCHER = str(Path(__file__).with_name("launch.py"))
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
REFRESHED = ("configMap", "secret", "projected", "downwardAPI")
REFRESH_SECONDS = 5.0
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class PodRunner:
    def __init__(self, agent: Agent, pod: dict[str, Any]):
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.dir = agent.state_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.net: network.PodNetwork | None = None
        self.pod_ip: str | None = None
        self.init = [
            ContainerState(c["name"], c.get("image", ""))
            for c in self.spec.get("initContainers", [])
        ]
        self.main = [
            ContainerState(c["name"], c.get("image", "")) for c in self.spec.get("containers", [])
        ]
        self.init_failed = False
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.volumes: dict[str, Path] = {}
        self.changed = asyncio.Event()
        self.stopping = False
        self.halted: str | None = None
        """Why the pod was stopped for good while it stays (DeadlineExceeded)."""
        self.start_time = (pod.get("status") or {}).get("startTime") or now_iso()
        self.last_status: dict[str, Any] | None = None
        self.hosts_text = ""
        self.tasks: list[asyncio.Task[Any]] = []
        self.run_task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.launches = 0
        self.created = time.monotonic()
        self.tokens: dict[str, float] = {}
        self.log_starts: dict[str, list[int]] = {}
        """Container → offset in its log file where each run began (for `kubectl logs`)."""
        """Token file → monotonic time it was issued."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def hostname(self) -> str:
        return str(self.spec.get("hostname") or self.name)[:63]

    def start(self) -> None:
        self.run_task = asyncio.create_task(self._run(), name=f"pod {self.key}")
        self.tasks.append(self.run_task)
        self.tasks.append(asyncio.create_task(self._status_loop(), name=f"status {self.key}"))

    # ---- lifecycle ----------------------------------------------------------------------

    async def _run(self) -> None:
        deadline = self.spec.get("activeDeadlineSeconds")
        if deadline is not None:
            self.tasks.append(asyncio.create_task(self._deadline(float(deadline))))
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            net = self.agent.network.allocate()
            self.pod_ip = net.address
            try:
                await asyncio.to_thread(self.agent.network.setup, net)
            finally:
                # Only now: before, a DNS refresh wrote into the /etc/netns dir that
                # setup (clearing leftovers of that name) then removed.
                self.net = net
            self.write_dns()
            self.changed.set()
            await self._prepare_volumes_until_ok()
            if any(k in v for v in self.spec.get("volumes", []) for k in REFRESHED):
                self.tasks.append(asyncio.create_task(self._refresh_volumes()))
            policy = self.spec.get("restartPolicy", "Always")
            for index, container in enumerate(self.spec.get("initContainers", [])):
                init_policy = "OnFailure" if policy == "Always" else policy
                code = await self._run_container(self.init[index], container, init_policy)
                if self.stopping:
                    return
                if code != 0:
                    self.init_failed = True
                    self.changed.set()
                    await self._release_network()
                    return
            await asyncio.gather(
                *(
                    self._run_container(self.main[i], c, policy)
                    for i, c in enumerate(self.spec.get("containers", []))
                )
            )
            if not self.stopping:
                await self._release_network()  # all containers are done: the sandbox goes
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("pod %s failed", self.key)
            for cs in self.init + self.main:
                if not cs.final and "running" not in cs.state:
                    cs.state = {
                        "waiting": {"reason": "RunContainerError", "message": str(exc)[:1000]}
                    }
            self.changed.set()

    async def _prepare_volumes_until_ok(self) -> None:
        delay = 1.0
        while not self.stopping:
            try:
                self.volumes = await self.prepare_volumes()
                return
            except (ConfigError, ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                message = f"MountVolume.SetUp failed: {exc}"
                for cs in self.init + self.main:
                    cs.state = {"waiting": {"reason": "ContainerCreating", "message": message}}
                self.changed.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _deadline(self, seconds: float) -> None:
        """spec.activeDeadlineSeconds: past it the containers are stopped and the pod Failed."""
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - self.created)))
        if self.stopping or (self.main and all(c.final for c in self.main)):
            return
        self.halted = "DeadlineExceeded"
        self.changed.set()
        procs = [p for p in self.procs.values() if p.returncode is None]
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), timeout=grace)
        for proc in procs:
            if proc.returncode is None:
                _signal(proc, signal.SIGKILL)

    async def _refresh_volumes(self) -> None:
        """As the kubelet's periodic sync: ConfigMap/Secret changes reach running pods."""
        while not self.stopping and not all(c.final for c in self.main):
            await asyncio.sleep(REFRESH_SECONDS)
            if self.stopping:
                return
            try:
                await self.prepare_volumes(refresh=True)
            except (ConfigError, ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                # the kubelet keeps the old files
                log.info("pod %s: volumes not refreshed: %s", self.key, exc)

    async def terminate(self, grace: float) -> None:
        """SIGTERM every container, SIGKILL after `grace` seconds, then release the network."""
        if self.stopping:
            await self.done.wait()
            return
        self.stopping = True
        procs = [p for p in self.procs.values() if p.returncode is None]
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        if procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(p.wait() for p in procs)), timeout=max(grace, 0.1)
                )
        for proc in procs:
            if proc.returncode is None:
                _signal(proc, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), timeout=5)
        if self.run_task is not None:
            # The container loops see `stopping` and record their final state.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self.run_task), 3)
            self.run_task.cancel()
        await self._release_network()
        self.done.set()

    async def _release_network(self) -> None:
        net, self.net = self.net, None
        if net is not None:
            await asyncio.to_thread(self.agent.network.teardown, net)

    async def stop_status(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # ---- volumes ------------------------------------------------------------------------

    async def _fetch(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.agent.kube.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def sources(self) -> spec.Sources:
        configmaps, secrets = spec.referenced(self.pod)
        out = spec.Sources()
        for name in configmaps:
            out.configmaps[name] = await self._fetch("configmaps", name)
        for name in secrets:
            out.secrets[name] = await self._fetch("secrets", name)
        return out

    async def _token(self, source: dict[str, Any]) -> bytes:
        sa = self.spec.get("serviceAccountName") or "default"
        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": int(source.get("expirationSeconds", 3607)),
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": self.name,
                    "uid": self.uid,
                },
            },
        }
        if source.get("audience"):
            body["spec"]["audiences"] = [source["audience"]]
        answer = await self.agent.kube.post(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token", body
        )
        return str(answer["status"]["token"]).encode()

    def _keyed(
        self,
        kind: str,
        name: str,
        data: dict[str, str] | None,
        items: list[dict[str, Any]] | None,
        optional: bool,
    ) -> dict[str, tuple[bytes, int | None]]:
        if data is None:
            if optional:
                return {}
            raise ConfigError(f'{kind} "{name}" not found')
        if not items:
            return {k: (v.encode(), None) for k, v in data.items()}
        out: dict[str, tuple[bytes, int | None]] = {}
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise ConfigError(f"{kind} {self.namespace}/{name} has no key {item['key']!r}")
            out[item["path"]] = (data[item["key"]].encode(), item.get("mode"))
        return out

    def _downward(self, items: list[dict[str, Any]]) -> dict[str, tuple[bytes, int | None]]:
        out: dict[str, tuple[bytes, int | None]] = {}
        for item in items:
            if "fieldRef" in item:
                path = item["fieldRef"]["fieldPath"]
                if path in ("metadata.labels", "metadata.annotations"):
                    values = self.pod["metadata"].get(path.split(".")[1]) or {}
                    text = "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
                else:
                    text = spec.field_ref(self.pod, path)
                out[item["path"]] = (text.encode(), item.get("mode"))
            elif "resourceFieldRef" in item:
                ref = item["resourceFieldRef"]
                container: dict[str, Any] = next(
                    (
                        c
                        for c in self.spec.get("containers", [])
                        if c["name"] == ref.get("containerName")
                    ),
                    {},
                )
                out[item["path"]] = (
                    spec.resource_ref(container, ref["resource"]).encode(),
                    item.get("mode"),
                )
        return out

    async def prepare_volumes(self, refresh: bool = False) -> dict[str, Path]:
        """Materialise the pod's volumes; with `refresh`, bring ConfigMap, Secret, downward
        API and projected files up to date in place (running containers have the
        directories bind-mounted) and keep the service-account token already issued."""
        sources = await self.sources()
        security = self.spec.get("securityContext") or {}
        fs_group = security.get("fsGroup")
        paths: dict[str, Path] = {}
        for volume in self.spec.get("volumes", []):
            name = volume["name"]
            path = self.dir / "volumes" / name
            files: dict[str, tuple[bytes, int | None]] | None = None
            default_mode = 0o644
            if "emptyDir" in volume:
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)
            elif "configMap" in volume:
                ref = volume["configMap"]
                default_mode = ref.get("defaultMode", default_mode)
                files = self._keyed(
                    "configmap",
                    ref["name"],
                    sources.configmap(ref["name"]),
                    ref.get("items"),
                    bool(ref.get("optional")),
                )
            elif "secret" in volume:
                ref = volume["secret"]
                default_mode = ref.get("defaultMode", default_mode)
                files = self._keyed(
                    "secret",
                    ref["secretName"],
                    sources.secret(ref["secretName"]),
                    ref.get("items"),
                    bool(ref.get("optional")),
                )
            elif "downwardAPI" in volume:
                default_mode = volume["downwardAPI"].get("defaultMode", default_mode)
                files = self._downward(volume["downwardAPI"].get("items", []))
            elif "projected" in volume:
                projected = volume["projected"]
                default_mode = projected.get("defaultMode", default_mode)
                files = {}
                for source in projected.get("sources") or []:
                    if "serviceAccountToken" in source:
                        token = source["serviceAccountToken"]
                        issued = path / token["path"]
                        lifetime = int(token.get("expirationSeconds", 3607))
                        fresh = (
                            time.monotonic() - self.tokens.get(str(issued), -1e9) < 0.8 * lifetime
                        )
                        if refresh and fresh and issued.is_file():
                            files[token["path"]] = (issued.read_bytes(), None)
                        else:  # as the kubelet: a new token at 80 % of its lifetime
                            files[token["path"]] = (await self._token(token), None)
                            self.tokens[str(issued)] = time.monotonic()
                    elif "configMap" in source:
                        ref = source["configMap"]
                        files.update(
                            self._keyed(
                                "configmap",
                                ref["name"],
                                sources.configmap(ref["name"]),
                                ref.get("items"),
                                bool(ref.get("optional")),
                            )
                        )
                    elif "secret" in source:
                        ref = source["secret"]
                        files.update(
                            self._keyed(
                                "secret",
                                ref["name"],
                                sources.secret(ref["name"]),
                                ref.get("items"),
                                bool(ref.get("optional")),
                            )
                        )
                    elif "downwardAPI" in source:
                        files.update(self._downward(source["downwardAPI"].get("items", [])))
                    else:
                        raise ConfigError(
                            f"volume {name}: unsupported projected source {sorted(source)}"
                        )
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                path = self.agent.state_dir / "pvc" / self.namespace / claim
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)
            elif "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
                if not path.exists():
                    raise ConfigError(f"volume {name}: hostPath {path} does not exist")
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise ConfigError(
                    f"volume {name}: volume type {kinds} is not supported by this node agent"
                )
            if files is not None:
                if refresh and path.is_dir():
                    _update_files(path, files, default_mode)
                else:
                    if path.exists():
                        shutil.rmtree(path)
                    path.mkdir(parents=True)
                    path.chmod(0o755)
                    _update_files(path, files, default_mode)
            if fs_group is not None and "hostPath" not in volume:
                _chown_group(path, int(fs_group))
            paths[name] = path
        return paths

    # ---- containers ---------------------------------------------------------------------

    def _security(self, container: dict[str, Any]) -> tuple[int, int, list[int]]:
        pod_sc = self.spec.get("securityContext") or {}
        sc = container.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser", spec.IMAGE_USER))
        gid = sc.get(
            "runAsGroup", pod_sc.get("runAsGroup", spec.IMAGE_USER if uid == spec.IMAGE_USER else 0)
        )
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root and uid == 0:
            raise ConfigError("container has runAsNonRoot and image will run as root")
        groups = [int(g) for g in pod_sc.get("supplementalGroups", [])]
        if pod_sc.get("fsGroup") is not None:
            groups.append(int(pod_sc["fsGroup"]))
        return int(uid), int(gid), groups

    def base_env(self) -> dict[str, str]:
        agent = self.agent
        env = {"PATH": f"{agent.venv / 'bin'}:{spec.SYSTEM_PATH}", "HOSTNAME": self.hostname}
        if self.spec.get("enableServiceLinks", True):
            env.update(spec.service_env(agent.services_in(self.namespace)))
        env.update(
            {
                "KUBERNETES_SERVICE_HOST": agent.kubernetes_ip,
                "KUBERNETES_SERVICE_PORT": "443",
                "KUBERNETES_SERVICE_PORT_HTTPS": "443",
                "KUBERNETES_PORT": f"tcp://{agent.kubernetes_ip}:443",
                "KUBERNETES_PORT_443_TCP": f"tcp://{agent.kubernetes_ip}:443",
                "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
                "KUBERNETES_PORT_443_TCP_PORT": "443",
                "KUBERNETES_PORT_443_TCP_ADDR": agent.kubernetes_ip,
            }
        )
        return env

    async def _launch_spec(self, container: dict[str, Any]) -> tuple[dict[str, Any], Path]:
        spec.image_target(container.get("image", ""))
        pod = {**self.pod, "status": {**(self.pod.get("status") or {}), **self.status()}}
        env = spec.container_env(pod, container, await self.sources(), self.base_env())
        argv = spec.argv_for(container, self.agent.venv, env)
        uid, gid, groups = self._security(container)
        mounts = []
        for vm in container.get("volumeMounts", []):
            if vm["name"] not in self.volumes:
                raise ConfigError(f"volumeMount {vm['mountPath']}: no volume named {vm['name']!r}")
            source = self.volumes[vm["name"]]
            if vm.get("subPath"):
                source = source / vm["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(
                {
                    "source": str(source),
                    "target": vm["mountPath"],
                    "readOnly": bool(vm.get("readOnly")),
                }
            )
        name = container["name"]
        self.launches += 1
        termination = self.dir / "termination" / name
        termination.parent.mkdir(parents=True, exist_ok=True)
        termination.write_bytes(b"")
        termination.chmod(0o666)
        mounts.append(
            {
                "source": str(termination),
                "target": container.get("terminationMessagePath") or "/dev/termination-log",
            }
        )
        assert self.net is not None
        staging = self.dir / "staging" / f"{name}-{self.launches}"
        staging.mkdir(parents=True, exist_ok=True)
        launch = {
            "netns": self.net.netns_path,
            "etc": {
                str(self.net.etc_dir / "hosts"): "/etc/hosts",
                str(self.net.etc_dir / "resolv.conf"): "/etc/resolv.conf",
            },
            "mounts": mounts,
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "workdir": container.get("workingDir") or spec.IMAGE_WORKDIR,
            "argv": argv,
            "env": env,
            "staging": str(staging),
            "hostname": self.hostname,
            "traverse": [str(self.agent.venv / "bin" / "python")],
            # what stands in for the image: the checkout and its virtualenv
            "image": [str(REPO), str(self.agent.venv)],
        }
        return launch, termination

    async def _run_container(
        self, cs: ContainerState, container: dict[str, Any], policy: str
    ) -> int:
        name = container["name"]
        log_path = self.dir / f"{name}.log"
        delay_restarts = 0
        while not self.stopping and not self.halted:
            try:
                launch, termination = await self._launch_spec(container)
            except ImageNotRunnable as exc:
                cs.state = {"waiting": {"reason": "ImageNotRunnable", "message": str(exc)}}
                self.changed.set()
                await self._sleep_unless_stopping(3600 * 24)
                return -1
            except (
                ConfigError,
                ApiError,
                aiohttp.ClientError,
                TimeoutError,
                OSError,
                KeyError,
                TypeError,
                ValueError,
            ) as exc:
                cs.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(exc)[:1000]}
                }
                self.changed.set()
                delay_restarts += 1
                await self._sleep_unless_stopping(spec.backoff_seconds(delay_restarts))
                continue
            spec_file = self.dir / "launch" / f"{name}.json"
            spec_file.parent.mkdir(parents=True, exist_ok=True)
            spec_file.write_text(json.dumps(launch))
            spec_file.chmod(0o600)
            with open(log_path, "ab") as out:
                self.log_starts.setdefault(name, []).append(out.seek(0, os.SEEK_END))
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-I",
                    LAUNCHER,
                    str(spec_file),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            self.procs[name] = proc
            network.record(self.agent.state_dir, proc.pid)
            started = now_iso()
            began = time.monotonic()
            cs.pid = proc.pid
            cs.state = {"running": {"startedAt": started}}
            cs.ready = False
            self.changed.set()
            probes = []
            liveness_failed = asyncio.Event()
            started_ok = asyncio.Event()
            cs.startup_pending = bool(container.get("startupProbe"))
            for kind in ("startup", "readiness", "liveness"):
                if container.get(f"{kind}Probe"):
                    loop = self._probe_loop(
                        container,
                        container[f"{kind}Probe"],
                        cs,
                        launch,
                        kind,
                        liveness_failed,
                        started_ok,
                    )
                    probes.append(asyncio.create_task(loop))
            if not cs.startup_pending:
                started_ok.set()
            if not container.get("readinessProbe"):
                probes.append(asyncio.create_task(self._ready_when(started_ok, cs)))
            kill_task = asyncio.create_task(self._kill_on(liveness_failed, proc, container))
            code = await proc.wait()
            network.forget(self.agent.state_dir, proc.pid)
            for task in [*probes, kill_task]:
                task.cancel()
            cs.ready = False
            exit_code = code if code >= 0 else 128 - code
            tail = b""
            if exit_code != 0:
                with contextlib.suppress(OSError), open(log_path, "rb") as f:
                    f.seek(max(0, f.seek(0, 2) - 8192))
                    tail = f.read()
            try:
                written = termination.read_bytes()
            except OSError:
                written = b""
            message = spec.termination_message(
                written, tail, exit_code, container.get("terminationMessagePolicy", "File")
            )
            terminated: dict[str, Any] = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": started,
                "finishedAt": now_iso(),
                "containerID": f"process://{proc.pid}",
            }
            if code < 0:
                terminated["signal"] = -code
            if message:
                terminated["message"] = message
            if self.stopping or self.halted or not spec.should_restart(policy, exit_code):
                cs.state = {"terminated": terminated}
                cs.final = True
                self.changed.set()
                return exit_code
            cs.last_state = {"terminated": terminated}
            cs.restart_count += 1
            if time.monotonic() - began > 60:
                delay_restarts = 0
            delay_restarts += 1
            delay = spec.backoff_seconds(delay_restarts)
            cs.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={name} pod={self.name}_{self.namespace}({self.uid})",
                }
            }
            self.changed.set()
            await self._sleep_unless_stopping(delay)
        return -1

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and not self.halted and time.monotonic() < end:
            await asyncio.sleep(min(0.2, end - time.monotonic()))

    async def _kill_on(
        self, event: asyncio.Event, proc: asyncio.subprocess.Process, container: dict[str, Any]
    ) -> None:
        await event.wait()
        grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        probe_grace = container.get("livenessProbe", {}).get("terminationGracePeriodSeconds")
        if probe_grace is not None:
            grace = float(probe_grace)
        _signal(proc, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=grace)
        _signal(proc, signal.SIGKILL)

    # ---- probes -------------------------------------------------------------------------

    async def _probe_loop(
        self,
        container: dict[str, Any],
        probe: dict[str, Any],
        cs: ContainerState,
        launch: dict[str, Any],
        kind: str,
        failed: asyncio.Event,
        started: asyncio.Event,
    ) -> None:
        if kind != "startup":  # readiness and liveness wait for the startup probe
            await started.wait()
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        period = float(probe.get("periodSeconds", 10))
        success_needed = int(probe.get("successThreshold", 1))
        failure_needed = int(probe.get("failureThreshold", 3))
        successes = failures = 0
        while True:
            ok = await self.probe(container, probe, launch)
            if ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
            if kind == "startup" and ok:
                cs.startup_pending = False
                started.set()
                self.changed.set()
                return
            if kind == "readiness":
                if ok and successes >= success_needed and not cs.ready:
                    cs.ready = True
                    self.changed.set()
                elif not ok and failures >= failure_needed and cs.ready:
                    cs.ready = False
                    self.changed.set()
            elif not ok and failures >= failure_needed:
                log.info(
                    "pod %s container %s: %s probe failed, killing",
                    self.key,
                    container["name"],
                    kind,
                )
                failed.set()
                return
            await asyncio.sleep(period)

    async def _ready_when(self, started: asyncio.Event, cs: ContainerState) -> None:
        """No readiness probe: ready once started."""
        await started.wait()
        cs.ready = True
        self.changed.set()

    async def probe(
        self, container: dict[str, Any], probe: dict[str, Any], launch: dict[str, Any]
    ) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        address = self.pod_ip or "127.0.0.1"
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = _port(container, get["port"])
                scheme = get.get("scheme", "HTTP").lower()
                host = get.get("host") or address
                path = get.get("path", "/")
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(
                        f"{scheme}://{host}:{port}{path}",
                        headers=headers,
                        ssl=False,
                        timeout=aiohttp.ClientTimeout(total=timeout),
                        allow_redirects=False,
                    ) as response,
                ):
                    return 200 <= response.status < 400
            if "tcpSocket" in probe:
                port = _port(container, probe["tcpSocket"]["port"])
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(probe["tcpSocket"].get("host") or address, port),
                    timeout,
                )
                writer.close()
                return True
            if "exec" in probe:
                proc = self.procs.get(container["name"])
                if proc is None or proc.returncode is not None:
                    return False
                argv = list(probe["exec"].get("command") or [])
                if argv and argv[0] in spec.VENV_COMMANDS:
                    argv[0] = str(self.agent.venv / "bin" / argv[0])
                nsenter = ["nsenter", "-t", str(proc.pid), "-n", "-m", "-r", "-w"]
                nsenter += ["-S", str(launch["uid"]), "-G", str(launch["gid"])]
                check = await asyncio.create_subprocess_exec(
                    *nsenter,
                    "--",
                    *argv,
                    env=launch["env"],
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                try:
                    return await asyncio.wait_for(check.wait(), timeout) == 0
                except TimeoutError:
                    check.kill()
                    await check.wait()
                    return False
            return False  # grpc probes are not supported: never passes
        except (OSError, TimeoutError, aiohttp.ClientError, ValueError):
            return False

    # ---- DNS and status -----------------------------------------------------------------

    def write_dns(self) -> None:
        if self.net is None:
            return
        text = spec.hosts_file(
            self.net.address,
            self.hostname,
            self.namespace,
            self.agent.all_services(),
            self.agent.headless_addresses(),
            self.agent.domain,
            subdomain=str(self.spec.get("subdomain") or ""),
            host_aliases=self.spec.get("hostAliases"),
        )
        etc = self.net.etc_dir
        etc.mkdir(parents=True, exist_ok=True)
        resolv = etc / "resolv.conf"
        if not resolv.exists():
            resolv.write_text(spec.resolv_conf(self.namespace, self.agent.domain))
        hosts = etc / "hosts"
        if text != self.hosts_text or not hosts.exists():
            # In place: running containers have this inode bind-mounted on /etc/hosts.
            with open(hosts, "a+") as f:
                f.seek(0)
                f.truncate()
                f.write(text)
            self.hosts_text = text

    def status(self) -> dict[str, Any]:
        return spec.pod_status(
            init=self.init,
            main=self.main,
            # Past the deadline the pod fails once its containers have stopped.
            init_failed=self.init_failed
            or (self.halted is not None and not any("running" in c.state for c in self.main)),
            pod_ip=self.pod_ip,
            host_ip=self.agent.host_ip,
            start_time=self.start_time,
            now=now_iso(),
            previous=self.last_status or (self.pod.get("status") or {}),
            reason=self.halted,
            message=DEADLINE_MESSAGE if self.halted else None,
            current=(self.pod.get("status") or {}).get("conditions"),
            readiness_gates=[g["conditionType"] for g in self.spec.get("readinessGates") or []],
        )

    async def _status_loop(self) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        self.changed.set()
        while True:
            await self.changed.wait()
            self.changed.clear()
            status = self.status()
            if status == self.last_status:
                continue
            try:
                await self.agent.kube.merge_patch(path, {"status": status})
                self.last_status = status
            except ApiError as exc:
                if exc.status == 404:
                    return
                log.warning("status of %s: %s", self.key, exc)
                await asyncio.sleep(1)
                self.changed.set()
            except Exception as exc:
                log.warning("status of %s: %s", self.key, exc)
                await asyncio.sleep(1)
                self.changed.set()
            await asyncio.sleep(0.05)

    async def flush_status(self) -> None:
        """Write the final status now (before the pod is deleted or the agent stops)."""
        status = self.status()
        if status != self.last_status:
            with contextlib.suppress(Exception):
                await self.agent.kube.merge_patch(
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
                    {"status": status},
                )
                self.last_status = status


def _update_files(
    root: Path, files: dict[str, tuple[bytes, int | None]], default_mode: int
) -> None:
    """Make `root` hold exactly `files`: changed ones replaced atomically, stale ones removed."""
    wanted = set()
    for rel, (content, mode) in files.items():
        target = root / rel
        if not target.resolve().is_relative_to(root.resolve()) or target == root:
            raise ConfigError(f"volume {root.name}: path {rel!r} leaves the volume")
        wanted.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        file_mode = mode if mode is not None else default_mode
        if target.is_file() and target.read_bytes() == content:
            target.chmod(file_mode)
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(content)
        tmp.chmod(file_mode)
        os.replace(tmp, target)
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file() and path not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"no container port named {port!r}")


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _chown_group(path: Path, gid: int) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, -1, gid)
        os.chmod(root, os.stat(root).st_mode | 0o2070)
        for name in files:
            file = os.path.join(root, name)
            os.chown(file, -1, gid)
            os.chmod(file, os.stat(file).st_mode | 0o040)
        del dirs[:0]
