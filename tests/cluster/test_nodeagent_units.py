"""The node agent's pure parts (no cluster needed): images, commands, environment, DNS
files and pod status; and its launcher + network + cleanup on a bridge of its own (root)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testcluster.nodeagent import network, pods, spec
from testcluster.nodeagent.spec import ConfigError, ContainerState, ImageNotRunnable, Sources
from tests.cluster.conftest import checkout_under_tmp

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")

VENV = Path("/venv")
POD = {
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
    "spec": {"nodeName": "node-a", "serviceAccountName": "reader"},
    "status": {"podIP": "10.244.3.7", "hostIP": "10.244.3.1"},
}


@pytest.mark.parametrize(
    ("image", "target"),
    [
        ("ghcr.io/pilotage-dev/pilotage-operator:0.1.0", "operator"),
        ("registry.local:5000/team/pilotage-server:dev", "server"),
        ("ghcr.io/x/pilotage-trainer@sha256:abc", "trainer"),
    ],
)
def test_our_images_map_to_their_target(image: str, target: str) -> None:
    assert spec.image_target(image) == target


@pytest.mark.parametrize(
    "image", ["nginx:1.27", "busybox", "ghcr.io/x/pilotage-serverx:1", "pilotage-server:1"]
)
def test_other_images_are_not_runnable_and_the_message_names_them(image: str) -> None:
    with pytest.raises(ImageNotRunnable, match=f'image "{image}"'):
        spec.image_target(image)


def test_entrypoint_cmd_command_and_args_follow_the_dockerfile() -> None:
    operator = {"image": "g/pilotage-operator:1"}
    assert spec.argv_for(operator, VENV, {}) == ["/venv/bin/pilotage", "operator"]
    server = {"image": "g/pilotage-server:1"}
    assert spec.argv_for(server, VENV, {}) == ["/venv/bin/pilotage", "serve", "--help"]
    args_only = {"image": "g/pilotage-server:1", "args": ["serve", "--port", "$(PORT)"]}
    assert spec.argv_for(args_only, VENV, {"PORT": "8080"}) == [
        "/venv/bin/pilotage",
        "serve",
        "--port",
        "8080",
    ]
    python = {
        "image": "g/pilotage-server:1",
        "command": ["python3", "-m", "http.server"],
        "args": ["$$(x)", "$(NOPE)"],
    }
    assert spec.argv_for(python, VENV, {}) == [
        "/venv/bin/python3",
        "-m",
        "http.server",
        "$(x)",
        "$(NOPE)",
    ]
    shell = {"image": "g/pilotage-trainer:1", "command": ["sh", "-c", "exit 3"]}
    assert spec.argv_for(shell, VENV, {}) == ["sh", "-c", "exit 3"]


def _sources() -> Sources:
    return Sources(
        configmaps={"settings": {"data": {"LEVEL": "debug", "MODE": "fast"}}, "absent": None},
        secrets={"creds": {"data": {"password": base64.b64encode(b"s3cret").decode()}}},
    )


def test_env_resolves_values_refs_envfrom_and_expansion_in_order() -> None:
    container = {
        "envFrom": [
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
        ],
        "env": [
            {"name": "A", "value": "one"},
            {"name": "B", "value": "$(A)-two-$(CFG_LEVEL)"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "LVL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": True}},
            },
        ],
    }
    env = spec.container_env(POD, container, _sources(), {"PATH": "/p"})
    assert env["CFG_MODE"] == "fast" and env["password"] == "s3cret"
    assert env["B"] == "one-two-debug"
    assert (env["PW"], env["LVL"], env["NAME"], env["IP"], env["APP"]) == (
        "s3cret",
        "debug",
        "web-1",
        "10.244.3.7",
        "web",
    )
    assert "OPT" not in env
    assert env["HOME"] == "/tmp" and env["PATH"] == "/p"


@pytest.mark.parametrize(
    ("var", "message"),
    [
        (
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}},
            'secret "missing" not found',
        ),
        (
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
            "couldn't find key user in Secret shop/creds",
        ),
        (
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}},
            "unsupported fieldRef fieldPath 'spec.containers'",
        ),
    ],
)
def test_env_errors_name_what_is_missing(var: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec.container_env(POD, {"env": [var]}, _sources(), {})
    assert message in str(caught.value)


def test_referenced_configmaps_and_secrets_cover_env_envfrom_and_volumes() -> None:
    pod = {
        "spec": {
            "initContainers": [{"envFrom": [{"secretRef": {"name": "s1"}}]}],
            "containers": [
                {
                    "env": [
                        {"name": "a", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}
                    ]
                }
            ],
            "volumes": [
                {"name": "v", "secret": {"secretName": "s2"}},
                {
                    "name": "p",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "c2"}},
                            {"serviceAccountToken": {"path": "t"}},
                        ]
                    },
                },
            ],
        }
    }
    assert spec.referenced(pod) == ({"c1", "c2"}, {"s1", "s2"})


def test_hosts_file_names_services_short_in_own_namespace_only() -> None:
    services = [
        {"metadata": {"name": "router", "namespace": "myns"}, "spec": {"clusterIP": "10.96.3.20"}},
        {"metadata": {"name": "db", "namespace": "other"}, "spec": {"clusterIP": "10.96.3.21"}},
        {"metadata": {"name": "peers", "namespace": "myns"}, "spec": {"clusterIP": "None"}},
    ]
    text = spec.hosts_file(
        "10.244.3.9", "web-1", "myns", services, {"myns/peers": ["10.244.3.4"]}, "cluster.local"
    )
    lines = text.splitlines()
    assert "10.244.3.9\tweb-1" in lines
    assert "10.96.3.20\trouter.myns.svc.cluster.local router.myns.svc router.myns router" in lines
    assert "10.96.3.21\tdb.other.svc.cluster.local db.other.svc db.other" in lines
    assert "10.244.3.4\tpeers.myns.svc.cluster.local peers.myns.svc peers.myns peers" in lines
    aliases = [{"ip": "10.1.2.3", "hostnames": ["db.example", "db"]}]
    text = spec.hosts_file("10.244.3.9", "web-1", "myns", [], {}, "cluster.local", "peers", aliases)
    assert text.splitlines()[2:] == [
        "10.244.3.9\tweb-1.peers.myns.svc.cluster.local\tweb-1",
        "10.1.2.3\tdb.example db",
    ]
    resolv = spec.resolv_conf("myns", "cluster.local")
    assert resolv.startswith("search myns.svc.cluster.local svc.cluster.local cluster.local\n")
    assert "nameserver 127.0.0.1" in resolv


def test_service_links_env() -> None:
    services = [
        {
            "metadata": {"name": "my-svc"},
            "spec": {"clusterIP": "10.96.3.5", "ports": [{"name": "http", "port": 80}]},
        }
    ]
    env = spec.service_env(services)
    assert env["MY_SVC_SERVICE_HOST"] == "10.96.3.5"
    assert env["MY_SVC_SERVICE_PORT"] == "80" and env["MY_SVC_SERVICE_PORT_HTTP"] == "80"
    assert env["MY_SVC_PORT_80_TCP_ADDR"] == "10.96.3.5"


def _terminated(code: int) -> ContainerState:
    cs = ContainerState("c", "i", state={"terminated": {"exitCode": code}}, final=True)
    return cs


def test_phase_and_conditions() -> None:
    running = ContainerState("c", "i", state={"running": {"startedAt": "t"}}, ready=True)
    waiting = ContainerState("c", "i")
    backoff = ContainerState(
        "c",
        "i",
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last_state={"terminated": {"exitCode": 1}},
    )
    assert spec.pod_phase([], [waiting], False) == "Pending"
    assert spec.pod_phase([], [running], False) == "Running"
    assert spec.pod_phase([], [backoff], False) == "Running"
    assert spec.pod_phase([], [_terminated(0), _terminated(0)], False) == "Succeeded"
    assert spec.pod_phase([], [_terminated(0), _terminated(2)], False) == "Failed"
    assert spec.pod_phase([ContainerState("i", "i")], [waiting], False) == "Pending"
    assert spec.pod_phase([_terminated(1)], [waiting], True) == "Failed"

    status = spec.pod_status(
        init=[],
        main=[running],
        init_failed=False,
        pod_ip="10.244.3.7",
        host_ip="10.244.3.1",
        start_time="t0",
        now="t1",
        previous={},
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (
        conditions["Ready"]["status"] == "True"
        and conditions["ContainersReady"]["status"] == "True"
    )
    assert (
        conditions["PodScheduled"]["status"] == "True"
        and conditions["Initialized"]["status"] == "True"
    )
    assert status["podIPs"] == [{"ip": "10.244.3.7"}] and status["hostIP"] == "10.244.3.1"
    assert status["containerStatuses"][0]["started"] is True
    running.ready = False
    later = spec.pod_status(
        init=[],
        main=[running],
        init_failed=False,
        pod_ip="10.244.3.7",
        host_ip="10.244.3.1",
        start_time="t0",
        now="t2",
        previous=status,
    )
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == (
        "False",
        "ContainersNotReady",
        "t2",
    )
    running.ready = True
    gate = {"type": "example.com/gate", "status": "False"}
    gated = spec.pod_status(
        init=[],
        main=[running],
        init_failed=False,
        pod_ip="10.244.3.7",
        host_ip="10.244.3.1",
        start_time="t0",
        now="t3",
        previous=later,
        current=[*later["conditions"], gate],
        readiness_gates=["example.com/gate"],
    )
    by_type = {c["type"]: c for c in gated["conditions"]}
    assert by_type["ContainersReady"]["status"] == "True"
    assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == (
        "False",
        "ReadinessGatesNotReady",
    )
    assert by_type["example.com/gate"] == gate  # another writer's condition is kept
    running.ready = False
    scheduled = next(c for c in later["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["lastTransitionTime"] == "t1"


def test_termination_message_and_fallback_to_logs() -> None:
    assert spec.termination_message(b"done", b"log", 0, "File") == "done"
    assert spec.termination_message(b"", b"a\nboom\n", 1, "FallbackToLogsOnError") == "a\nboom"
    assert spec.termination_message(b"", b"a\nboom\n", 1, "File") == ""
    assert spec.termination_message(b"", b"ok\n", 0, "FallbackToLogsOnError") == ""
    assert len(spec.termination_message(b"x" * 10000, b"", 0, "File")) == 4096


def test_restart_policy_and_backoff() -> None:
    assert spec.should_restart("Always", 0) and spec.should_restart("OnFailure", 1)
    assert not spec.should_restart("OnFailure", 0) and not spec.should_restart("Never", 1)
    assert [spec.backoff_seconds(n) for n in (1, 2, 3, 10)] == [1, 2, 4, 30]


# ---- launcher, network and cleanup on a bridge of this test's own ---------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nsenter") is None,
    reason="pod networks need root and iproute2",
)


@pytest.fixture
def bridge() -> object:
    # 'pilv<i>' never collides with a cluster's 'pil<N>' nor a second agent's 'pilu<N>';
    # the kernel refuses a second link of one name, so taking the name is atomic.
    for i in range(1000):
        name = f"pilv{i}br"
        if (
            subprocess.run(
                ["ip", "link", "add", name, "type", "bridge"], capture_output=True
            ).returncode
            == 0
        ):
            break
    else:
        raise AssertionError("no free bridge name pilv<i>br")
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _mounts_mentioning(text: str) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if text in line]


@needs_root
@pytest.mark.skipif(checkout_under_tmp(), reason="the checkout is under /tmp (see conftest)")
def test_a_container_runs_as_its_user_in_its_netns_with_mounts_and_cleanup_leaves_nothing(
    bridge: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    net = network.Network(bridge, "10.250.77.0/24")
    net.configure_bridge()
    pod = net.allocate()
    net.setup(pod)
    (pod.etc_dir / "hosts").write_text(
        "127.0.0.1\tlocalhost\n10.96.77.20\trouter.myns router.myns.svc.cluster.local\n"
    )
    (pod.etc_dir / "resolv.conf").write_text(spec.resolv_conf("myns", "cluster.local"))
    token = state / "token-volume"
    token.mkdir(parents=True)
    (token / "token").write_text("the-token")
    data = state / "data"
    data.mkdir()
    data.chmod(0o777)
    scratch = state / "scratch"  # an emptyDir on /tmp, an ancestor of the state directory
    scratch.mkdir()
    scratch.chmod(0o777)
    termination = state / "termination"
    termination.write_text("")
    termination.chmod(0o666)
    code = (
        "import os, socket, http.server\n"
        "ip = socket.getaddrinfo('router.myns.svc.cluster.local', 80)[0][4][0]\n"
        "open('/data/report', 'w').write(f'{os.getuid()} {os.getgid()} {os.getcwd()} ' + "
        "open('/var/run/secrets/kubernetes.io/serviceaccount/token').read() + ' ' + ip)\n"
        "open('/dev/termination-log', 'w').write('bye')\n"
        "open('/tmp/scratch-file', 'w').write('on the emptyDir')\n"
        "http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=8080, bind='0.0.0.0')\n"
    )
    launch = {
        "netns": pod.netns_path,
        "etc": {
            str(pod.etc_dir / "hosts"): "/etc/hosts",
            str(pod.etc_dir / "resolv.conf"): "/etc/resolv.conf",
        },
        "mounts": [
            {
                "source": str(token),
                "target": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
            {"source": str(data), "target": "/data-of-a-test-pod/../data"},
            {"source": str(termination), "target": "/dev/termination-log"},
            {"source": str(scratch), "target": "/tmp"},
        ],
        "uid": 10001,
        "gid": 10001,
        "groups": [],
        "workdir": "/tmp",
        "argv": [sys.executable, "-c", code],
        "env": {"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        "staging": str(state / "staging"),
        # as pods.py gives it: the checkout and virtualenv stand in for the image, and
        # stay visible under the emptyDir on /tmp when the checkout is under /tmp
        "image": [str(pods.REPO), sys.prefix],
    }
    (state / "launch.json").write_text(json.dumps(launch))
    launcher = Path(network.__file__).with_name("launch.py")
    proc = subprocess.Popen(
        [sys.executable, "-I", str(launcher), str(state / "launch.json")], start_new_session=True
    )
    network.record(state, proc.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((pod.address, 8080), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "the container exited"
                assert time.monotonic() < deadline, "the container never listened on its pod IP"
                time.sleep(0.05)
        assert (data / "report").read_text() == "10001 10001 /tmp the-token 10.96.77.20"
        assert termination.read_text() == "bye"
        assert (scratch / "scratch-file").read_text() == "on the emptyDir"
        for path in ("/data", "/run/secrets/kubernetes.io", "/dev/termination-log"):
            assert not os.path.lexists(path), f"{path} was created on the host"
        assert network.netns_pids(pod.netns) == [proc.pid]
    finally:
        removed = network.cleanup(bridge, state)  # as after a SIGKILL of the agent
    assert proc.wait(timeout=10) == -9
    assert f"netns {pod.netns}" in removed
    assert network.ours(network.prefix_of(bridge)) == ([], [])
    assert not pod.etc_dir.exists()
    assert _mounts_mentioning(str(state)) == [] and _mounts_mentioning(pod.netns) == []
    assert (
        "inet "
        not in subprocess.run(
            ["ip", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True
        ).stdout
    )


async def test_a_dns_refresh_during_network_setup_does_not_lose_the_hosts_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setup clears leftovers of the namespace's name (its /etc/netns dir included); a
    Service change refreshing the pod's hosts file meanwhile wrote it there first, so the
    hosts file was gone and every container start failed to bind it on /etc/hosts."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from testcluster.nodeagent.pods import PodRunner

    monkeypatch.setattr(network, "ETC_NETNS", tmp_path / "etc-netns")
    in_setup, go_on = threading.Event(), threading.Event()

    class SlowNetwork:
        def allocate(self) -> network.PodNetwork:
            return network.PodNetwork("pilx-p2", "pilx-h2", "10.1.0.2")

        def setup(self, net: network.PodNetwork) -> None:
            in_setup.set()
            go_on.wait(10)
            shutil.rmtree(net.etc_dir, ignore_errors=True)  # as Network.setup does
            net.etc_dir.mkdir(parents=True)

    agent = SimpleNamespace(
        network=SlowNetwork(),
        state_dir=tmp_path / "state",
        domain="cluster.local",
        all_services=lambda: [],
        headless_addresses=lambda: {},
    )
    pod = {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
        "spec": {"containers": []},
    }
    runner = PodRunner(agent, pod)  # type: ignore[arg-type]
    volumes_reached = asyncio.Event()

    async def volumes() -> None:
        volumes_reached.set()
        await asyncio.Event().wait()

    runner._prepare_volumes_until_ok = volumes  # type: ignore[method-assign]
    task = asyncio.create_task(runner._run())
    await asyncio.to_thread(in_setup.wait, 10)
    runner.write_dns()  # the agent's DNS loop, on a Service event
    go_on.set()
    await asyncio.wait_for(volumes_reached.wait(), 10)
    task.cancel()
    hosts = tmp_path / "etc-netns" / "pilx-p2" / "hosts"
    assert hosts.read_text().splitlines()[2] == "10.1.0.2\tweb"


async def test_the_informer_resumes_a_dropped_watch_and_relists_on_410_gone(tmp_path: Path) -> None:
    """Against a fake API server: list at rv 10, a watch that ends after one event
    (resumed from that event's version), then 410 Gone (relisted: the vanished objects
    are reported DELETED), then a watch from the new list's version."""
    import asyncio

    from aiohttp import web

    from testcluster.nodeagent.kube import Informer, Kube

    def pod(name: str, rv: str) -> dict:
        return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}

    lists = [
        {"metadata": {"resourceVersion": "10"}, "items": [pod("a", "5")]},
        {"metadata": {"resourceVersion": "20"}, "items": [pod("b", "19")]},
    ]
    watches: list[tuple[str, str]] = []
    last_watch, release = asyncio.Event(), asyncio.Event()

    async def pods(request: web.Request) -> web.StreamResponse:
        assert request.query["fieldSelector"] == "spec.nodeName=n1"
        if request.query.get("watch") != "1":
            return web.json_response(lists.pop(0))
        version = request.query["resourceVersion"]
        watches.append((version, request.query.get("allowWatchBookmarks", "")))
        response = web.StreamResponse()
        await response.prepare(request)
        if version == "10":
            await response.write(
                json.dumps({"type": "ADDED", "object": pod("c", "11")}).encode() + b"\n"
            )
            await response.write(
                json.dumps(
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}
                ).encode()
                + b"\n"
            )
        elif version == "12":
            gone = {
                "kind": "Status",
                "code": 410,
                "reason": "Expired",
                "message": "too old resource version",
            }
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
        else:
            last_watch.set()
            await release.wait()
        return response

    app = web.Application()
    app.router.add_get("/api/v1/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    kube = Kube(kubeconfig)
    events: list[tuple[str, str]] = []
    informer = Informer(
        kube,
        "/api/v1/pods",
        lambda kind, obj: events.append((kind, obj["metadata"]["name"])),
        fieldSelector="spec.nodeName=n1",
    )
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(last_watch.wait(), 10)
    finally:
        task.cancel()
        release.set()
        await kube.close()
        await runner.cleanup()
    assert [v for v, _ in watches] == ["10", "12", "20"]
    assert all(bookmarks == "true" for _, bookmarks in watches)
    assert events == [
        ("MODIFIED", "a"),
        ("ADDED", "c"),
        ("DELETED", "a"),
        ("DELETED", "c"),
        ("MODIFIED", "b"),
    ]
    assert sorted(informer.items) == ["ns/b"]


async def test_volumes_refresh_in_place_and_the_token_is_renewed_at_80_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from testcluster.nodeagent import pods
    from testcluster.nodeagent.pods import PodRunner

    issued: list[dict] = []
    data = {"level": "v1"}

    class FakeKube:
        async def get(self, path: str) -> dict:
            assert path == "/api/v1/namespaces/shop/configmaps/settings"
            return {"data": dict(data)}

        async def post(self, path: str, body: dict) -> dict:
            assert path == "/api/v1/namespaces/shop/serviceaccounts/reader/token"
            issued.append(body)
            return {"status": {"token": f"token-{len(issued)}"}}

    agent = SimpleNamespace(kube=FakeKube(), state_dir=tmp_path)
    pod = {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
        "spec": {
            "serviceAccountName": "reader",
            "containers": [],
            "volumes": [
                {
                    "name": "api",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token", "expirationSeconds": 1000}},
                            {"configMap": {"name": "settings"}},
                        ]
                    },
                }
            ],
        },
    }
    now = [1000.0]
    monkeypatch.setattr(pods.time, "monotonic", lambda: now[0])
    runner = PodRunner(agent, pod)  # type: ignore[arg-type]
    volume = (await runner.prepare_volumes())["api"]
    inode = volume.stat().st_ino
    assert (volume / "token").read_text() == "token-1" and (volume / "level").read_text() == "v1"
    assert issued[0]["spec"]["boundObjectRef"] == {
        "kind": "Pod",
        "apiVersion": "v1",
        "name": "web",
        "uid": "u1",
    }

    data["level"] = "v2"
    now[0] += 799
    await runner.prepare_volumes(refresh=True)
    assert (volume / "token").read_text() == "token-1" and (volume / "level").read_text() == "v2"
    now[0] += 2  # past 80 % of 1000 s
    await runner.prepare_volumes(refresh=True)
    assert (volume / "token").read_text() == "token-2"
    assert volume.stat().st_ino == inode  # the directory containers have bind-mounted


def test_addresses_are_given_round_robin_and_a_released_one_comes_back_last() -> None:
    net = network.Network("pilx9br", "10.9.0.0/29")  # hosts .1 (gateway) to .6
    assert net.gateway == "10.9.0.1"
    first = [net.allocate() for _ in range(3)]
    assert [n.address for n in first] == ["10.9.0.2", "10.9.0.3", "10.9.0.4"]
    assert (first[0].netns, first[0].host_link) == ("pilx9-p2", "pilx9-h2")
    del net.used[first[0].address]  # released (teardown without the ip commands)
    assert [net.allocate().address for _ in range(3)] == ["10.9.0.5", "10.9.0.6", "10.9.0.2"]
    with pytest.raises(RuntimeError, match=r"no free address in 10\.9\.0\.0/29"):
        net.allocate()


async def test_an_api_server_hiccup_while_preparing_volumes_is_retried(tmp_path: Path) -> None:
    import asyncio
    from types import SimpleNamespace

    import aiohttp

    from testcluster.nodeagent.pods import PodRunner

    calls = []

    class FlakyKube:
        async def get(self, path: str) -> dict:
            calls.append(path)
            if len(calls) == 1:
                raise aiohttp.ClientConnectionError("Cannot connect to host 127.0.0.1:6443")
            return {"data": {"level": "debug"}}

    agent = SimpleNamespace(kube=FlakyKube(), state_dir=tmp_path)
    pod = {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
        "spec": {
            "containers": [{"name": "main", "image": "g/pilotage-server:1"}],
            "volumes": [{"name": "settings", "configMap": {"name": "settings"}}],
        },
    }
    runner = PodRunner(agent, pod)  # type: ignore[arg-type]
    task = asyncio.create_task(runner._prepare_volumes_until_ok())
    await asyncio.wait_for(runner.changed.wait(), 5)
    waiting = runner.main[0].state["waiting"]
    assert waiting["reason"] == "ContainerCreating" and "Cannot connect" in waiting["message"]
    await asyncio.wait_for(task, 10)  # retried after a second
    assert (runner.volumes["settings"] / "level").read_text() == "debug" and len(calls) == 2


async def test_finishing_a_deletion_is_retried_until_the_api_server_answers() -> None:
    import aiohttp

    from testcluster.nodeagent.agent import Agent
    from testcluster.nodeagent.kube import ApiError

    calls: list[tuple[str, dict]] = []

    class FlakyKube:
        async def delete(self, path: str, body: dict) -> dict:
            calls.append((path, body))
            if len(calls) == 1:
                raise aiohttp.ClientConnectionError("connection reset")
            if len(calls) == 2:
                raise ApiError(500, "etcd leader changed", "InternalError")
            return {}

    agent = Agent.__new__(Agent)
    agent.kube = FlakyKube()  # type: ignore[assignment]
    await agent._delete_pod({"metadata": {"name": "web", "namespace": "shop", "uid": "u1"}})
    assert len(calls) == 3
    path, body = calls[-1]
    assert path == "/api/v1/namespaces/shop/pods/web"
    assert body["gracePeriodSeconds"] == 0 and body["preconditions"] == {"uid": "u1"}


async def test_the_service_proxy_skips_a_refusing_endpoint_and_keeps_a_half_closed_connection(
    tmp_path: Path,
) -> None:
    """A client that sends its request and shuts down its write side (as `nc -N` or a
    streaming upload does) still gets the whole answer through the proxy."""
    import asyncio

    from testcluster.nodeagent.proxy import Listener

    async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await reader.read()  # until the client's EOF
        await asyncio.sleep(0.1)
        writer.write(f"got {len(body)} bytes".encode())
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(answer_after_eof, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    dead_port = refusing.getsockname()[1]
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    proxy_port = probe.getsockname()[1]
    probe.close()
    listener = Listener(
        "127.0.0.1", proxy_port, lambda: [("127.0.0.1", dead_port), ("127.0.0.1", up_port)]
    )
    await listener.start()
    try:
        for _ in range(2):  # round robin starts once on each endpoint; the dead one is skipped
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            writer.write(b"x" * 100_000)
            await writer.drain()
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"got 100000 bytes"
            writer.close()
    finally:
        await listener.stop()
        upstream.close()
        refusing.close()
