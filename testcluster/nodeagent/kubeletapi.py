"""The slice of the kubelet's HTTPS API the API server proxies for `kubectl logs`.

Served on the node's InternalIP (the bridge address) at a free port, announced in the
Node's status.daemonEndpoints.kubeletEndpoint.Port, with a self-signed certificate (the API
server of the test cluster does not verify kubelet certificates). Only
GET /containerLogs/<ns>/<pod>/<container> (tailLines, limitBytes, follow, previous) and
/healthz; no exec, attach, port-forward or metrics.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("nodeagent.kubeletapi")


def self_signed(directory: Path, address: str, name: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName(name)]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


LogSource = Callable[[str, str, str, bool], tuple[Path, int, int | None, Callable[[], bool]] | None]
"""(namespace, pod, container, previous) → (log file, start offset, end offset or None for
'to the end', whether the container can still write), or None when there is no such log."""


class KubeletApi:
    def __init__(self, address: str, state_dir: Path, node_name: str, logs: LogSource):
        self.address = address
        self.state_dir = state_dir
        self.node_name = node_name
        self.logs = logs
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        tls = self_signed(self.state_dir / "kubelet-pki", self.address, self.node_name)
        site = web.TCPSite(self._runner, self.address, 0, ssl_context=tls)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        query = request.query
        previous = query.get("previous") == "true"
        found = self.logs(ns, pod, container, previous)
        if found is None:
            what = "previous terminated container" if previous else "container"
            raise web.HTTPBadRequest(text=f'{what} "{container}" in pod "{pod}" is not available')
        path, start, end, writing = found
        data = _read(path, start, end)
        if query.get("tailLines"):
            lines = data.splitlines(keepends=True)
            data = (
                b"".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) > 0 else b""
            )
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        if limit is not None:
            data = data[:limit]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if query.get("follow") == "true" and end is None and not previous:
            offset = start + len(_read(path, start, None))
            while True:
                more = _read(path, offset, None)
                if more:
                    await response.write(more)
                    offset += len(more)
                elif not writing():
                    break
                else:
                    await asyncio.sleep(0.2)
        await response.write_eof()
        return response


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def _read(path: Path, start: int, end: int | None) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read() if end is None else f.read(max(0, end - start))
    except OSError:
        return b""
