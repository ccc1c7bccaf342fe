"""Start the test cluster: etcd, the control plane and the node agent, in the background.

    python -m testcluster.up [--dir .cluster] [--bin-root .cluster/bin]

Builds the binaries first if they are missing (testcluster.build), then starts etcd,
kube-apiserver (RBAC, service-account signing keys, certificates of our own, on
127.0.0.1 and free ports), kube-controller-manager, kube-scheduler and the node agent,
waits until `/readyz` answers ok and the node is Ready, writes an admin kubeconfig to
`<dir>/kubeconfig` and prints `KUBECONFIG=<absolute path>` as its last line.

Idempotent: a cluster already running from `<dir>` is reported, not started twice; the
leftovers of one that died are cleaned away first. Every name the cluster creates on
the host (bridge, network namespaces, links) carries `pil<N>`, where N is taken by
creating the bridge `pil<N>br` (the kernel refuses a second link of that name), so two
clusters on one machine never share one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from testcluster import build, pki, versions
from testcluster.state import ClusterState, alive, free_port, read_state, write_state

NODE_NAME = "pilotage-node"
STARTUP_DEADLINE_S = 180.0
DNS_DOMAIN = "cluster.local"


class UpError(Exception):
    pass


@dataclass
class _Plan:
    directory: Path
    n: int
    kube_bin: Path
    etcd_bin: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"pil{self.n}br"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.n}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{self.n}.0/24"

    @property
    def host_ip(self) -> str:
        return f"10.244.{self.n}.1"

    @property
    def kubernetes_service_ip(self) -> str:
        return f"10.96.{self.n}.1"


def _take_bridge() -> int:
    """Claim a cluster number by creating its bridge; creation is atomic in the kernel."""
    start = (os.getpid() % 200) + 1
    for offset in range(200):
        n = (start + offset - 1) % 200 + 1
        result = subprocess.run(
            ["ip", "link", "add", f"pil{n}br", "type", "bridge"], capture_output=True, text=True
        )
        if result.returncode == 0:
            return n
        if "File exists" not in result.stderr:
            raise UpError(f"cannot create a bridge for the pod network: {result.stderr.strip()}")
    raise UpError("no free cluster number: 200 bridges pil<N>br exist (run make cluster-down)")


def _kubeconfig(path: Path, server: str, ca: Path, client: pki.Pair, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "pilotage-test",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            }
        ],
        "contexts": [
            {"name": "pilotage-test", "context": {"cluster": "pilotage-test", "user": user}}
        ],
        "current-context": "pilotage-test",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _start(name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None) -> int:
    log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    log.close()
    return process.pid


def _tail(logs: Path, name: str, lines: int = 12) -> str:
    try:
        text = (logs / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _wait(what: str, check: Callable[[], bool], state: ClusterState, deadline: float) -> None:
    while time.monotonic() < deadline:
        for name, pid in state.pids.items():
            if not alive(pid):
                raise UpError(
                    f"{name} exited while waiting for {what}; its log ends:\n"
                    f"{_tail(state.directory / 'logs', name)}"
                )
        if check():
            return
        time.sleep(0.2)
    raise UpError(f"timed out waiting for {what}")


def _https(state: ClusterState, path: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(state.directory / "pki" / "ca.crt"))
    pki_dir = state.directory / "pki"
    context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    url = f"https://127.0.0.1:{state.ports['apiserver']}{path}"
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def _readyz(state: ClusterState) -> bool:
    status, body = _https(state, "/readyz")
    return status == 200 and body.strip() == b"ok"


def _node_ready(state: ClusterState) -> bool:
    """The node is Ready and schedulable: its not-ready taint is lifted (the node controller
    does that a moment after Ready) and the default namespace's ServiceAccount exists (pods
    created before the controller made it are refused)."""
    status, body = _https(state, f"/api/v1/nodes/{NODE_NAME}")
    if status != 200:
        return False
    node = json.loads(body)
    conditions = node.get("status", {}).get("conditions", [])
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return False
    taints = node.get("spec", {}).get("taints") or []
    if any(t.get("key", "").startswith("node.kubernetes.io/not-ready") for t in taints):
        return False
    return _https(state, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200


def running(directory: Path) -> ClusterState | None:
    """The cluster running from `directory`, if all its processes live and it is ready."""
    state = read_state(directory)
    if state is None or not all(alive(pid) for pid in state.pids.values()):
        return None
    return state if _readyz(state) and _node_ready(state) else None


def _certificates(plan: _Plan) -> dict[str, pki.Pair]:
    directory = plan.directory / "pki"
    directory.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(directory)
    service = "kubernetes.default.svc"
    return {
        "ca": ca,
        "apiserver": pki.issue(
            ca,
            directory,
            "apiserver",
            "kube-apiserver",
            server_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                service,
                f"{service}.{DNS_DOMAIN}",
            ),
            server_ips=("127.0.0.1", plan.kubernetes_service_ip, plan.host_ip),
        ),
        "admin": pki.issue(ca, directory, "admin", "pilotage-admin", organization="system:masters"),
        "controller-manager": pki.issue(
            ca, directory, "controller-manager", "system:kube-controller-manager"
        ),
        "scheduler": pki.issue(ca, directory, "scheduler", "system:kube-scheduler"),
        "service-accounts": pki.make_service_account_keys(directory),
    }


def _apiserver_args(plan: _Plan, certs: dict[str, pki.Pair]) -> list[str]:
    issuer = f"https://kubernetes.default.svc.{DNS_DOMAIN}"
    return [
        str(plan.kube_bin / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{plan.ports['etcd']}",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.ports['apiserver']}",
        f"--advertise-address={plan.host_ip}",
        f"--cert-dir={plan.directory / 'pki'}",
        f"--tls-cert-file={certs['apiserver'].cert}",
        f"--tls-private-key-file={certs['apiserver'].key}",
        f"--client-ca-file={certs['ca'].cert}",
        f"--service-account-issuer={issuer}",
        f"--service-account-key-file={certs['service-accounts'].cert}",
        f"--service-account-signing-key-file={certs['service-accounts'].key}",
        f"--service-cluster-ip-range={plan.service_cidr}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        "--enable-priority-and-fairness=false",
        "--watch-cache=true",
        "--event-ttl=30m",
    ]


def _controller_manager_args(plan: _Plan, certs: dict[str, pki.Pair]) -> list[str]:
    config = str(plan.directory / "controller-manager.kubeconfig")
    return [
        str(plan.kube_bin / "kube-controller-manager"),
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.ports['controller-manager']}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={certs['service-accounts'].key}",
        f"--root-ca-file={certs['ca'].cert}",
        f"--cluster-signing-cert-file={certs['ca'].cert}",
        f"--cluster-signing-key-file={certs['ca'].key}",
        "--controllers=*",
        "--profiling=false",
    ]


def _scheduler_args(plan: _Plan) -> list[str]:
    config = str(plan.directory / "scheduler.kubeconfig")
    return [
        str(plan.kube_bin / "kube-scheduler"),
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.ports['scheduler']}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def _nodeagent_args(plan: _Plan, venv: Path) -> list[str]:
    return [
        str(venv / "bin" / "python"),
        "-m",
        "testcluster.nodeagent",
        f"--kubeconfig={plan.directory / 'kubeconfig'}",
        f"--node-name={NODE_NAME}",
        f"--bridge={plan.bridge}",
        f"--pod-cidr={plan.pod_cidr}",
        f"--service-cidr={plan.service_cidr}",
        f"--cluster-dns-domain={DNS_DOMAIN}",
        f"--apiserver=127.0.0.1:{plan.ports['apiserver']}",
        f"--state-dir={plan.directory / 'node'}",
        f"--venv={venv}",
        f"--log={plan.directory / 'logs' / 'nodeagent.log'}",
    ]


def up(directory: Path, bin_root: Path, venv: Path) -> ClusterState:
    directory = directory.resolve()
    existing = running(directory)
    if existing is not None:
        print(f"cluster already running from {directory}", flush=True)
        return existing
    if read_state(directory) is not None:
        from testcluster.down import down

        print("cleaning up a cluster that is no longer running…", flush=True)
        down(directory)
    kube_bin, etcd_bin = build.build(bin_root)
    directory.mkdir(parents=True, exist_ok=True)
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)
    plan = _Plan(directory, _take_bridge(), kube_bin, etcd_bin)
    started = time.monotonic()
    deadline = started + STARTUP_DEADLINE_S
    state = ClusterState(directory=directory, n=plan.n, bridge=plan.bridge, node_name=NODE_NAME)
    write_state(state)  # from here on, `down` knows what to clean
    try:
        for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler"):
            plan.ports[name] = free_port()
        state.ports = plan.ports
        certs = _certificates(plan)
        server = f"https://127.0.0.1:{plan.ports['apiserver']}"
        _kubeconfig(directory / "kubeconfig", server, certs["ca"].cert, certs["admin"], "admin")
        for component in ("controller-manager", "scheduler"):
            _kubeconfig(
                directory / f"{component}.kubeconfig",
                server,
                certs["ca"].cert,
                certs[component],
                component,
            )
        etcd_data = directory / "etcd"
        state.pids["etcd"] = _start(
            "etcd",
            [
                str(etcd_bin / "etcd"),
                f"--data-dir={etcd_data}",
                "--name=pilotage-test",
                f"--listen-client-urls=http://127.0.0.1:{plan.ports['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{plan.ports['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{plan.ports['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{plan.ports['etcd-peer']}",
                f"--initial-cluster=pilotage-test=http://127.0.0.1:{plan.ports['etcd-peer']}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            logs,
        )
        write_state(state)
        state.pids["apiserver"] = _start("apiserver", _apiserver_args(plan, certs), logs)
        write_state(state)
        print(f"starting Kubernetes v{versions.KUBERNETES} on {server}…", flush=True)
        _wait("the API server's /readyz", lambda: _readyz(state), state, deadline)
        state.pids["controller-manager"] = _start(
            "controller-manager", _controller_manager_args(plan, certs), logs
        )
        state.pids["scheduler"] = _start("scheduler", _scheduler_args(plan), logs)
        state.pids["nodeagent"] = _start("nodeagent", _nodeagent_args(plan, venv), logs)
        write_state(state)
        _wait(f"node {NODE_NAME} to be Ready", lambda: _node_ready(state), state, deadline)
    except BaseException:
        from testcluster.down import down

        down(directory)
        raise
    print(f"cluster ready in {time.monotonic() - started:.1f} s (logs in {logs})", flush=True)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testcluster.up", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dir", type=Path, default=build.REPO / ".cluster")
    parser.add_argument("--bin-root", type=Path, default=build.DEFAULT_BIN_ROOT)
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("testcluster: the node agent needs root (network namespaces)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        state = up(args.dir, args.bin_root, args.venv.resolve())
    except (UpError, build.BuildError) as exc:
        print(f"testcluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("testcluster: interrupted; stopped what had started", file=sys.stderr)
        return 130
    print(f"KUBECONFIG={state.directory / 'kubeconfig'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
