"""Services without kube-proxy: a userspace TCP proxy per ClusterIP port, inside the agent.

Each Service with a ClusterIP gets that address as a /32 on the cluster's bridge (pods
reach it through their default route, the host directly) and an asyncio listener on
ClusterIP:port that forwards to the Service's ready endpoints (EndpointSlices), round
robin, trying the next endpoint when one refuses. A NodePort listens on the node's
InternalIP (the bridge address) only. The `kubernetes` Service of `default`
forwards to the API server's real address (127.0.0.1:port, unreachable from pods).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nodeagent.proxy")
IP_FREEBIND = 15


class Listener:
    def __init__(self, ip: str, port: int, targets: Callable[[], list[tuple[str, int]]]):
        self.ip = ip
        self.port = port
        self.targets = targets
        self.counter = itertools.count()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((self.ip, self.port))
        self.server = await asyncio.start_server(self._handle, sock=sock)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        targets = self.targets()
        upstream = None
        if targets:
            start = next(self.counter)
            for i in range(len(targets)):
                host, port = targets[(start + i) % len(targets)]
                try:
                    upstream = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
                    break
                except (OSError, TimeoutError):
                    continue
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                with contextlib.suppress(Exception):
                    end.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; its EOF is passed on as a half-close, so the other direction
    keeps flowing (both sockets are closed once both directions are done)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()  # a reset: tear the other side down too


class ServiceProxy:
    def __init__(
        self,
        add_address: Callable[[str], None],
        remove_address: Callable[[str], None],
        apiserver: tuple[str, int],
        node_ip: str | None = None,
    ):
        self.node_ip = node_ip
        """NodePorts listen on this address (the node's InternalIP), never 0.0.0.0: two
        clusters on one machine may allocate the same nodePort."""
        self.add_address = add_address
        self.remove_address = remove_address
        self.apiserver = apiserver
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.wanted: dict[tuple[str, int], tuple[str, str, dict[str, Any]]] = {}
        self.slices: dict[str, dict[str, Any]] = {}
        self.lock = asyncio.Lock()

    def endpoints(
        self, namespace: str, service: str, port: dict[str, Any]
    ) -> list[tuple[str, int]]:
        if (namespace, service) == ("default", "kubernetes"):
            return [self.apiserver]
        out: list[tuple[str, int]] = []
        for eps in self.slices.values():
            meta = eps["metadata"]
            if (
                meta.get("namespace") != namespace
                or (meta.get("labels") or {}).get("kubernetes.io/service-name") != service
            ):
                continue
            if eps.get("addressType", "IPv4") != "IPv4":
                continue
            target = next(
                (
                    p.get("port")
                    for p in eps.get("ports") or []
                    if (p.get("name") or "") == (port.get("name") or "")
                ),
                None,
            )
            if target is None:
                continue
            for endpoint in eps.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                out.extend((address, int(target)) for address in endpoint.get("addresses", []))
        return sorted(set(out))

    async def sync(self, services: list[dict[str, Any]]) -> None:
        async with self.lock:
            wanted: dict[tuple[str, int], tuple[str, str, dict[str, Any]]] = {}
            for svc in services:
                ip = (svc.get("spec") or {}).get("clusterIP")
                if not ip or ip == "None":
                    continue
                for port in svc["spec"].get("ports") or []:
                    if port.get("protocol", "TCP") != "TCP":
                        continue
                    target = (svc["metadata"]["namespace"], svc["metadata"]["name"], port)
                    wanted[(ip, int(port["port"]))] = target
                    if self.node_ip and port.get("nodePort"):
                        wanted[(self.node_ip, int(port["nodePort"]))] = target
            self.wanted = wanted
            for key in [k for k in self.listeners if k not in wanted]:
                await self.listeners.pop(key).stop()
            fixed = {self.node_ip} if self.node_ip else set()  # never added nor removed
            old_ips = {ip for ip, _ in self.listeners} | fixed
            for key in wanted:
                if key in self.listeners:
                    continue
                ip, port = key
                if ip not in old_ips:
                    await asyncio.to_thread(self.add_address, ip)
                    old_ips.add(ip)
                listener = Listener(ip, port, functools.partial(self._targets, key))
                try:
                    await listener.start()
                except OSError as exc:
                    log.warning("cannot listen on %s:%s: %s", ip, port, exc)
                    continue
                self.listeners[key] = listener
            live_ips = {ip for ip, _ in self.listeners} | fixed
            for ip in {ip for ip, _ in wanted} | old_ips:
                if ip not in live_ips:
                    await asyncio.to_thread(self.remove_address, ip)

    def _targets(self, key: tuple[str, int]) -> list[tuple[str, int]]:
        if key not in self.wanted:
            return []
        namespace, service, port = self.wanted[key]
        return self.endpoints(namespace, service, port)

    async def close(self) -> None:
        for listener in self.listeners.values():
            await listener.stop()
        self.listeners.clear()
