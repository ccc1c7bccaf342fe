"""The local platform: the control actions carried out with processes on 127.0.0.1.

* a training (or profiling) run is ``pilotage train|profile -f MANIFESTS --output URI``
  in a process whose exit status is written to a file, so that a run that finishes
  while `pilotage up` is down is still read correctly when it comes back;
* each (deployment, version) replica is a ``pilotage serve`` process;
* each deployment's router is a ``pilotage route`` process reading a routing file that
  is rewritten atomically (the router watches it, no restart);
* artifacts live under ``<state>/artifacts`` as ``file://`` URIs.

Resources of the same name in two namespaces are told apart everywhere (process keys,
owner references, run directories, routing files, logs) by ``scoped``.

Every process is recorded in the store (see ``processes.Supervisor``), so a restarted
runtime adopts the ones still running and never starts a finished run again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pilotage.api import (
    Dataset,
    DriftMonitor,
    ModelDeployment,
    Resource,
    TrainingJob,
    parse_resource,
)
from pilotage.api.modelcard import CARD_FILE, ModelCard
from pilotage.control.common import CRASH_LOOP_CRASHES, restart_backoff
from pilotage.control.observe import server_counters as parse_server_counters
from pilotage.control.observe import training_job_info
from pilotage.control.platform import carry_out
from pilotage.control.types import (
    Action,
    CreateTrainingJob,
    DeleteRun,
    EnsureRouter,
    EnsureServer,
    RemoveServer,
    RouterState,
    RouterStats,
    RunState,
    ServerCounters,
    ServerState,
    SetRoutes,
    StartRun,
    TableRejection,
    TrainingJobInfo,
)
from pilotage.local.processes import Supervisor
from pilotage.local.store import DEFAULT_NAMESPACE, ProcessRecord, Store, StoreError
from pilotage.router.table import load_table_file
from pilotage.sources import CREDENTIALS_ENV
from pilotage.storage import StorageError, join, read_bytes
from pilotage.wire.admin import RouterAdminError, get_stats
from pilotage.wire.router_stats import parse_router_stats
from pilotage.wire.routes import RouteTable, RoutingError

HTTP_TIMEOUT_S = 1.0
LOCALHOST = "127.0.0.1"
ROUTER_WATCH_INTERVAL_S = 0.1

# The shell wrapper of a run: the run's exit status lands in a file even when nobody
# is waiting for it (the runtime was restarted in between).
_RUN_WRAPPER = 'rc="$1"; shift; "$@"; echo $? > "$rc.tmp"; mv "$rc.tmp" "$rc"'


def scoped(namespace: str, name: str) -> str:
    """A resource's name in process keys, owner references and file names.

    The bare name in the default namespace, so that the records and files of a runtime
    from before namespaces were told apart are still found (and adopted); elsewhere
    ``namespace:name``. No Kubernetes name or namespace holds ``:``, so the two forms
    never collide.
    """
    if ":" in namespace or "/" in namespace or ":" in name or "/" in name:
        raise ValueError(f"invalid namespace or name: {namespace!r}/{name!r}")
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}:{name}"


def unscoped(text: str) -> tuple[str, str]:
    """(namespace, name) of a ``scoped`` name."""
    namespace, sep, name = text.partition(":")
    return (namespace, name) if sep else (DEFAULT_NAMESPACE, text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def http_json(
    url: str,
    body: Any = None,
    method: str | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> Any:
    """GET (or POST ``body``) JSON of a model server; raises OSError on any failure."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise OSError(f"{url}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
    except (urllib.error.URLError, ValueError, TimeoutError) as exc:
        raise OSError(f"{url}: {exc}") from exc


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ServerInfo:
    deployment: str
    version: str
    replica: int
    url: str
    pid: int


@dataclass
class Crash:
    """A server replica that exited without becoming ready, and how often in a row."""

    pid: int
    count: int
    at: float
    """time.monotonic() when its exit was first seen."""
    message: str


class LocalPlatform:
    """Carries out control actions with local processes; observes them for the reconcilers."""

    def __init__(self, store: Store, supervisor: Supervisor, python: str = sys.executable):
        self.store = store
        self.supervisor = supervisor
        self.python = python
        self._crashes: dict[str, Crash] = {}
        """Server replicas (by process key) that exited since they were last ready."""
        self.state_dir = store.state_dir
        self.artifacts_dir = self.state_dir / "artifacts"
        self._ready: set[tuple[int, int]] = set()  # (pid, start_ticks) seen ready
        # (namespace, deployment) -> why its router could not keep its port ("" if it did)
        self._endpoint_problems: dict[tuple[str, str], str] = {}
        # (namespace, deployment) -> the routing table last set (URLs filled on writing)
        self._tables: dict[tuple[str, str], RouteTable] = {}

    @property
    def artifact_uri(self) -> str:
        return self.artifacts_dir.resolve().as_uri()

    def _pilotage(self, *args: str) -> list[str]:
        return [self.python, "-m", "pilotage", *args]

    def carry_out(self, action: Action, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Carry out an action of a resource in ``namespace``."""
        carry_out(self, namespace, action)

    # -- training and profiling runs ---------------------------------------------------

    def secrets_dir(self, namespace: str) -> Path:
        """Where the Secrets of a namespace are: `<state>/secrets/<namespace>/<name>/<key>`."""
        return self.state_dir / "secrets" / namespace

    def _run_dir(self, name: str, namespace: str) -> Path:
        return self.state_dir / "runs" / scoped(namespace, name)

    def start_run(self, namespace: str, action: StartRun) -> None:
        """Start the run unless one of this name is recorded (running or finished)."""
        key = f"run/{scoped(namespace, action.name)}"
        if self.supervisor.find(key) is not None:
            return
        run_dir = self._run_dir(action.name, namespace)
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("rc", "stdout", "log"):
            with contextlib.suppress(FileNotFoundError):
                (run_dir / stale).unlink()
        manifests = run_dir / "manifests.yaml"
        manifests.write_text(yaml.safe_dump_all(action.manifests, sort_keys=False))
        argv = [
            "sh",
            "-c",
            _RUN_WRAPPER,
            "sh",
            str(run_dir / "rc"),
            *self._pilotage(action.purpose, "-f", str(manifests), "--output", action.output_uri),
        ]
        self.supervisor.start(
            key,
            "run",
            f"{action.owner_kind}/{scoped(namespace, action.owner_name)}",
            argv,
            run_dir / "log",
            stdout_path=run_dir / "stdout",
            info={"purpose": action.purpose, "deadline": action.deadline_seconds},
            # a Secret a source names is a directory of key files here (docs/local.md)
            env={CREDENTIALS_ENV: str(self.secrets_dir(namespace))},
        )

    def run_state(self, namespace: str, name: str) -> RunState | None:
        record = self.supervisor.find(f"run/{scoped(namespace, name)}")
        if record is None:
            return None
        run_dir = self._run_dir(name, namespace)
        started = _parse_time(record.started)
        if self.supervisor.running(record):
            deadline = record.info.get("deadline")
            elapsed = (datetime.now(UTC) - started).total_seconds()
            if deadline is None or elapsed <= float(deadline):
                return RunState(name=name, phase="Running", started=started)
            self.supervisor.stop(record.key)
            self.supervisor.store.save_process(record)  # keep it: the run is finished
            (run_dir / "rc").write_text("124\n")
        rc_text = ""
        with contextlib.suppress(OSError):
            rc_text = (run_dir / "rc").read_text().strip()
        finished = datetime.fromtimestamp(
            (run_dir / "rc").stat().st_mtime if rc_text else time.time(), UTC
        )
        result = self._run_result(run_dir)
        if rc_text == "0" and result is not None:
            return RunState(name, "Succeeded", started, finished, result)
        if rc_text == "124":
            message = f"run exceeded its deadline of {record.info.get('deadline')}s"
        elif not rc_text:
            message = "run process vanished without an exit status (killed)"
        elif rc_text == "0":
            message = "run exited 0 but printed no JSON summary"
        else:
            message = str((result or {}).get("message") or "") or _last_line(run_dir / "log")
            message = f"exit status {rc_text}: {message}"
        code = int(rc_text) if rc_text.lstrip("-").isdigit() else None
        return RunState(name, "Failed", started, finished, result, message, exit_code=code)

    @staticmethod
    def _run_result(run_dir: Path) -> dict[str, Any] | None:
        line = _last_line(run_dir / "stdout")
        try:
            doc = json.loads(line) if line else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def delete_run(self, namespace: str, action: DeleteRun) -> None:
        self.supervisor.stop(f"run/{scoped(namespace, action.name)}")

    def run_log(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> Path:
        return self._run_dir(name, namespace) / "log"

    # -- model servers -------------------------------------------------------------------

    @staticmethod
    def _server_prefix(deployment: str, namespace: str, version: str | None = None) -> str:
        return f"server/{scoped(namespace, deployment)}/" + (
            f"{version}/" if version is not None else ""
        )

    def server_records(
        self, deployment: str, version: str | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> list[ProcessRecord]:
        return self.supervisor.records(self._server_prefix(deployment, namespace, version))

    def ensure_server(self, namespace: str, action: EnsureServer) -> None:
        """Keep ``replicas`` servers of the version running; restart any that died."""
        settings = {
            "modelUri": action.model_uri,
            "threads": action.settings.threads,
            "maxBatchSize": action.settings.max_batch_size,
            "maxBatchWaitUs": action.settings.max_batch_wait_us,
            # only when set: servers started before the setting existed are kept
            **({"strictSchema": True} if action.settings.strict_schema else {}),
        }
        restarted = False
        now = time.monotonic()
        for record in self.server_records(action.deployment, action.version, namespace):
            replica = int(record.key.rsplit("/", 1)[1])
            if replica >= action.replicas or record.info.get("settings") != settings:
                self.supervisor.stop(record.key)
                self._crashes.pop(record.key, None)
                restarted = True
            elif not self.supervisor.running(record):
                # Restarted after an exponential backoff (control.restart_backoff); the dead
                # record stays meanwhile, so that `servers` can say why it is down.
                crash = self._crashes.get(record.key)
                if crash is None or crash.pid != record.pid:
                    count = (crash.count if crash else 0) + 1
                    message = _last_line(Path(record.log_path))
                    crash = Crash(record.pid, count, now, message)
                    self._crashes[record.key] = crash
                if now < crash.at + restart_backoff(crash.count):
                    continue
                self.supervisor.stop(record.key)
        have = {
            int(r.key.rsplit("/", 1)[1])
            for r in self.server_records(action.deployment, action.version, namespace)
        }
        for replica in range(action.replicas):
            if replica in have:
                continue
            self._start_server(action, namespace, replica, settings)
            restarted = True
        if restarted:
            self._refresh_routes(action.deployment, namespace)

    def _start_server(
        self, action: EnsureServer, namespace: str, replica: int, settings: dict[str, Any]
    ) -> None:
        port = free_port()
        scope = scoped(namespace, action.deployment)
        key = f"{self._server_prefix(action.deployment, namespace, action.version)}{replica}"
        argv = self._pilotage(
            "serve",
            "--model-uri",
            action.model_uri,
            "--name",
            action.deployment,
            "--port",
            str(port),
            "--threads",
            str(action.settings.threads),
            "--max-batch-size",
            str(action.settings.max_batch_size),
            "--max-batch-wait-us",
            str(action.settings.max_batch_wait_us),
            *(["--strict-schema"] if action.settings.strict_schema else []),
            "--cache-dir",
            str(self.state_dir / "cache"),
            "--enable-fault-injection",  # the demo slows a canary through /admin/faults
        )
        log = self.state_dir / "logs" / f"server-{scope}-{action.version}-{replica}.log"
        self.supervisor.start(
            key,
            "server",
            f"ModelDeployment/{scope}",
            argv,
            log,
            port=port,
            info={"settings": settings, "version": action.version},
        )

    def remove_server(self, namespace: str, action: RemoveServer) -> None:
        records = self.server_records(action.deployment, action.version, namespace)
        if records:
            self._router_caught_up(action.deployment, namespace)
        for record in records:
            self.supervisor.stop(record.key)

    def _router_caught_up(self, deployment: str, namespace: str, timeout: float = 3.0) -> bool:
        """Wait until the router uses the routing file's revision, so that a server about to
        be stopped no longer receives requests (the file is watched, not pushed)."""
        try:
            revision = json.loads(self._routes_file(deployment, namespace).read_text()).get(
                "revision"
            )
        except (OSError, ValueError):
            return True
        record = self.supervisor.find(self._router_key(deployment, namespace))
        if record is None or not self.supervisor.running(record):
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                live = self._admin_stats(record, deployment, namespace, timeout=0.5)
                if live.get("revision") == revision:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _ready_now(self, record: ProcessRecord, path: str) -> bool:
        ident = (record.pid, record.start_ticks)
        if not self.supervisor.running(record):
            self._ready.discard(ident)
            return False
        if ident in self._ready:
            return True
        try:
            http_json(f"http://{LOCALHOST}:{record.port}{path}", timeout=0.5)
        except OSError:
            return False
        self._ready.add(ident)
        self._crashes.pop(record.key, None)  # ready again: the next exit starts a new count
        return True

    def servers(self, namespace: str, deployment: str) -> tuple[ServerState, ...]:
        """One state per version: ready when every replica answers its readiness probe."""
        by_version: dict[str, list[ProcessRecord]] = {}
        for record in self.server_records(deployment, namespace=namespace):
            by_version.setdefault(str(record.info.get("version")), []).append(record)
        states = []
        for version, records in by_version.items():
            down = [r for r in records if not self._ready_now(r, "/v2/health/ready")]
            message = ""
            crashes = [self._crashes[r.key] for r in records if r.key in self._crashes]
            worst = max(crashes, key=lambda c: c.count, default=None)
            if down:
                dead = [r for r in down if not self.supervisor.running(r)]
                if dead:
                    message = f"server exited: {_last_line(Path(dead[0].log_path))}"
                elif worst is not None:
                    message = f"starting again after it exited: {worst.message}"
                else:
                    message = "starting"
            states.append(
                ServerState(
                    version=version,
                    ready=not down,
                    message=message,
                    failing=bool(down) and worst is not None and worst.count >= CRASH_LOOP_CRASHES,
                    restarts=worst.count if worst is not None else 0,
                    ready_replicas=len(records) - len(down),
                )
            )
        return tuple(states)

    def server_url(
        self, deployment: str, version: str, namespace: str = DEFAULT_NAMESPACE
    ) -> str | None:
        records = self.server_records(deployment, version, namespace)
        return f"http://{LOCALHOST}:{records[0].port}" if records else None

    def server_urls(
        self, deployment: str, version: str, namespace: str, ready_only: bool
    ) -> list[str] | None:
        """The URLs of the version's replicas the router balances over: the ready ones
        (every one while none is ready yet, unless ``ready_only``: autoscaling, where
        the router holds requests until one is). None when no replica exists and
        ``ready_only`` is off."""
        records = sorted(
            self.server_records(deployment, version, namespace),
            key=lambda r: int(r.key.rsplit("/", 1)[1]),
        )
        ready = [r for r in records if self._ready_now(r, "/v2/health/ready")]
        if not ready_only and not ready:
            if not records:
                return None
            ready = records
        return [f"http://{LOCALHOST}:{r.port}" for r in ready]

    def server_counters(
        self, namespace: str, deployment: str, version: str
    ) -> tuple[ServerCounters, ...]:
        out = []
        for record in self.server_records(deployment, version, namespace):
            if not self._ready_now(record, "/v2/health/ready"):
                continue
            try:
                snap = http_json(
                    f"http://{LOCALHOST}:{record.port}/v1/models/{deployment}/drift", timeout=2.0
                )
            except OSError:
                continue
            if isinstance(snap, dict):
                out.append(parse_server_counters(snap, f"{record.key}@{record.pid}"))
        return tuple(out)

    def inject_faults(
        self,
        deployment: str,
        version: str,
        latency_ms: float = 0.0,
        error_rate: float = 0.0,
        namespace: str = DEFAULT_NAMESPACE,
        serial_latency_ms: float = 0.0,
    ) -> int:
        """Set fault injection on every replica of a version; returns how many were set."""
        done = 0
        for record in self.server_records(deployment, version, namespace):
            http_json(
                f"http://{LOCALHOST}:{record.port}/admin/faults",
                {
                    "latencyMs": latency_ms,
                    "serialLatencyMs": serial_latency_ms,
                    "errorRate": error_rate,
                },
            )
            done += 1
        return done

    # -- routers ---------------------------------------------------------------------------

    def _routes_file(self, deployment: str, namespace: str) -> Path:
        return self.state_dir / "routes" / f"{scoped(namespace, deployment)}.json"

    @staticmethod
    def _router_key(deployment: str, namespace: str) -> str:
        return f"router/{scoped(namespace, deployment)}"

    def _router(self, deployment: str, namespace: str) -> ProcessRecord | None:
        return self.supervisor.find(self._router_key(deployment, namespace))

    def _token_file(self, deployment: str, namespace: str, kind: str) -> Path:
        """A router token of this deployment (``admin`` or ``variant``), made once, 0600.
        The variant token is the one a tester sends in ``x-pilotage-variant-token``."""
        path = self.state_dir / "tokens" / f"router-{scoped(namespace, deployment)}.{kind}"
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(
                path.with_suffix(f".{kind}.tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
            )
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
            os.replace(path.with_suffix(f".{kind}.tmp"), path)
        return path

    def _admin_stats(
        self, record: ProcessRecord, deployment: str, namespace: str, timeout: float = 1.0
    ) -> dict[str, Any]:
        """The router's stats from its admin port (the public port serves no internals);
        OSError when it cannot be read."""
        admin_port = record.info.get("admin_port")
        if not isinstance(admin_port, int):
            raise OSError(f"router {deployment} has no admin port (started by an older runtime)")
        token = self._token_file(deployment, namespace, "admin").read_text().strip()
        try:
            return get_stats(f"http://{LOCALHOST}:{admin_port}", token, timeout=timeout)
        except RouterAdminError as exc:
            raise OSError(str(exc)) from exc

    def ensure_router(self, namespace: str, action: EnsureRouter) -> None:
        """Keep the router running; it starts with the first routing table."""
        record = self._router(action.deployment, namespace)
        feedback_token = action.feedback_token_secret is not None
        if (
            record is not None
            and self.supervisor.running(record)
            and isinstance(record.info.get("admin_port"), int)
            and record.info.get("feedback_token", False) == feedback_token
        ):
            return
        if self._routes_file(action.deployment, namespace).exists():
            self._start_router(
                action.deployment, namespace, record.port if record else None, feedback_token
            )

    def _port_file(self, deployment: str, namespace: str) -> Path:
        return self._routes_file(deployment, namespace).with_suffix(".port")

    def _start_router(
        self, deployment: str, namespace: str, port: int | None, feedback_token: bool = False
    ) -> None:
        """Start the router with an admin port and its tokens: the variant token always
        (the embedded runtime makes its own instead of reading a Secret), the feedback
        token when the spec names a feedback token Secret.

        It starts (or restarts) on the port it had: the endpoint clients use survives a
        crash of the router and a stop and restart of `pilotage up` (the port is kept in
        ``routes/<deployment>.port``). Only a port another program took meanwhile moves
        it, and ``router`` says so."""
        key = self._router_key(deployment, namespace)
        self.supervisor.stop(key)
        port_file = self._port_file(deployment, namespace)
        if port is None:
            with contextlib.suppress(OSError, ValueError):
                port = int(port_file.read_text().strip())
        problem = ""
        if port is not None and not _port_free(port):
            problem = f"port {port} was taken by another program while the router was down"
            port = None
        if port is None:
            port = free_port()
        _atomic_write(port_file, f"{port}\n")
        self._endpoint_problems[(namespace, deployment)] = (
            f"{problem}; the router now listens on port {port}" if problem else ""
        )
        admin_port = free_port()
        while admin_port == port:
            admin_port = free_port()
        argv = self._pilotage(
            "route",
            "--config",
            str(self._routes_file(deployment, namespace)),
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            "--admin-token-file",
            str(self._token_file(deployment, namespace, "admin")),
            "--variant-token-file",
            str(self._token_file(deployment, namespace, "variant")),
            "--watch-interval",
            str(ROUTER_WATCH_INTERVAL_S),
        )
        if feedback_token:
            argv += [
                "--feedback-token-file",
                str(self._token_file(deployment, namespace, "feedback")),
            ]
        scope = scoped(namespace, deployment)
        self.supervisor.start(
            key,
            "router",
            f"ModelDeployment/{scope}",
            argv,
            self.state_dir / "logs" / f"router-{scope}.log",
            port=port,
            info={"admin_port": admin_port, "feedback_token": feedback_token},
        )

    def set_routes(self, namespace: str, action: SetRoutes) -> None:
        """Keep the table and write it as the routing document with the servers' current
        URLs; the router reloads it. A server that restarts on another port gets the
        document rewritten (``_refresh_routes``)."""
        self._tables[(namespace, action.deployment)] = action.table
        self._refresh_routes(action.deployment, namespace)

    def _refresh_routes(self, deployment: str, namespace: str) -> None:
        table = self._tables.get((namespace, deployment))
        if table is None:
            return  # none set since the runtime started: the next SetRoutes writes it
        urls: dict[str, list[str]] = {}
        # with autoscaling (the table has activation settings) only ready replicas are
        # routed to; a variant with none is at zero and the router holds its requests
        autoscaled = table.activation is not None
        for variant in table.variants:
            found = self.server_urls(deployment, variant.version, namespace, autoscaled)
            if found is None:
                return  # a server is missing; the reconciler ensures it first
            urls[variant.version] = found
        text = json.dumps(table.to_document(deployment, urls), indent=2, sort_keys=True)
        path = self._routes_file(deployment, namespace)
        with contextlib.suppress(OSError):
            if path.read_text() == text:
                return
        _atomic_write(path, text)
        record = self._router(deployment, namespace)
        if record is None or not self.supervisor.running(record):
            self._start_router(
                deployment,
                namespace,
                record.port if record else None,
                bool(record.info.get("feedback_token")) if record else False,
            )

    def router_admin(
        self, deployment: str, namespace: str = DEFAULT_NAMESPACE
    ) -> tuple[str, str] | None:
        """(admin URL, token) of the deployment's running router, or None."""
        record = self._router(deployment, namespace)
        if record is None or not self.supervisor.running(record):
            return None
        admin_port = record.info.get("admin_port")
        if not isinstance(admin_port, int):
            return None
        token = self._token_file(deployment, namespace, "admin").read_text().strip()
        return f"http://{LOCALHOST}:{admin_port}", token

    def router_endpoint(self, deployment: str, namespace: str = DEFAULT_NAMESPACE) -> str | None:
        record = self._router(deployment, namespace)
        return f"http://{LOCALHOST}:{record.port}" if record else None

    def router(self, namespace: str, deployment: str) -> RouterState | None:
        record = self._router(deployment, namespace)
        if record is None:
            return None
        endpoint = f"http://{LOCALHOST}:{record.port}"
        moved = self._endpoint_problems.get((namespace, deployment)) or None
        if not self.supervisor.running(record):
            # A router whose first table is refused exits at start: say why.
            return RouterState(
                ready=False,
                endpoint=endpoint,
                rejection=self._table_rejection(deployment, namespace, None),
                endpoint_problem=moved,
            )
        try:
            doc = self._admin_stats(record, deployment, namespace)
        except OSError:
            return RouterState(ready=False, endpoint=endpoint, endpoint_problem=moved)
        stats = parse_router_stats(doc)
        return RouterState(
            ready=True,
            endpoint=endpoint,
            stats=stats,
            rejection=self._table_rejection(deployment, namespace, stats),
            endpoint_problem=moved,
        )

    def _table_rejection(
        self, deployment: str, namespace: str, stats: RouterStats | None
    ) -> TableRejection | None:
        """Why the router is not using the routing file, when it refuses it. The router's
        own check of the file gives the reason (the words it logs and shows as
        `lastReloadError`); a valid file it does not use yet is only a moment away (the
        router looks every watch interval), so that is no rejection. Checking the file
        itself, not `lastReloadError`, keeps an earlier file's error from being reported
        against this one."""
        path = self._routes_file(deployment, namespace)
        try:
            wanted = json.loads(path.read_text()).get("revision")
        except (OSError, ValueError, AttributeError):
            return None
        if stats is not None and stats.revision == wanted:
            return None
        try:
            load_table_file(path)
        except RoutingError as exc:
            return TableRejection(str(wanted) if wanted is not None else None, str(exc))
        return None

    def remove_router(self, deployment: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.supervisor.stop(self._router_key(deployment, namespace))
        self._endpoint_problems.pop((namespace, deployment), None)
        self._tables.pop((namespace, deployment), None)
        routes = self._routes_file(deployment, namespace)
        # (earlier runtimes also kept the table without URLs in a `.table.json`)
        for path in (routes, routes.with_suffix(".table.json"), routes.with_suffix(".port")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove_deployment(self, deployment: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Stop everything a deleted ModelDeployment had running."""
        self.remove_router(deployment, namespace)
        for record in self.server_records(deployment, namespace=namespace):
            self.supervisor.stop(record.key)

    # -- resources in the store, and model cards --------------------------------------------

    def dataset(self, namespace: str, name: str) -> Dataset | None:
        found = self.store.find("Dataset", name, namespace)
        return found if isinstance(found, Dataset) else None

    def deployment(self, namespace: str, name: str) -> ModelDeployment | None:
        found = self.store.find("ModelDeployment", name, namespace)
        return found if isinstance(found, ModelDeployment) else None

    def training_jobs(
        self, namespace: str, labels: Mapping[str, str] | None = None
    ) -> tuple[TrainingJobInfo, ...]:
        return tuple(
            training_job_info(tj, *_owner(tj))
            for tj in self.store.objects("TrainingJob", namespace)
            if isinstance(tj, TrainingJob)
            and all(tj.metadata.labels.get(k) == v for k, v in (labels or {}).items())
        )

    def drift_monitors(self, namespace: str) -> tuple[DriftMonitor, ...]:
        return tuple(
            dm
            for dm in self.store.objects("DriftMonitor", namespace)
            if isinstance(dm, DriftMonitor)
        )

    def read_model_card(
        self, uri: str, served_by: tuple[str, str, str] | None = None
    ) -> ModelCard | None:
        """The model.json at a model directory URI (local artifacts are always readable)."""
        try:
            return ModelCard.model_validate_json(read_bytes(join(uri, CARD_FILE)))
        except (StorageError, ValueError):
            return None

    # -- resources created by the control plane ----------------------------------------------

    def create_training_job(self, namespace: str, action: CreateTrainingJob) -> None:
        """Create the job (in its owner's namespace unless it names one) if it is absent."""
        manifest = json.loads(json.dumps(action.manifest))
        meta = manifest.setdefault("metadata", {})
        namespace = meta.get("namespace") or namespace
        meta["namespace"] = namespace
        owner = self.store.find(action.owner_kind, action.owner_name, namespace)
        if owner is not None:
            refs = [
                r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner.metadata.uid
            ]
            refs.append(
                {
                    "apiVersion": owner.api_version,
                    "kind": owner.kind,
                    "name": owner.name,
                    "uid": owner.metadata.uid,
                    "controller": True,
                }
            )
            meta["ownerReferences"] = refs
        resource = parse_resource(manifest, f"TrainingJob/{meta.get('name')}")
        if self.store.find("TrainingJob", resource.name, namespace) is not None:
            return
        with contextlib.suppress(StoreError):  # created meanwhile: create-if-absent
            self.store.create(resource)

    def stop_everything(self) -> list[int]:
        return self.supervisor.stop_all()


def _owner(res: Resource) -> tuple[str | None, str | None]:
    """(kind, name) of the resource's controller owner reference."""
    refs = getattr(res.metadata, "ownerReferences", None) or []
    for ref in refs:
        if isinstance(ref, dict) and ref.get("controller", True):
            return ref.get("kind"), ref.get("name")
    return None, None


def _port_free(port: int) -> bool:
    """Whether a listener could bind the port now. The probe sets SO_REUSEADDR as the
    router's own socket does (pilotage.listening): a port whose last connections sit in
    TIME_WAIT after a restart is free to it, one another program listens on is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True
