"""A small asyncio client for the Kubernetes API: requests, list+watch with resume and relist."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger("nodeagent.kube")


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def _material(entry: dict[str, Any], key: str, base: Path, scratch: Path) -> str | None:
    """A file path for `key` or `key-data` of a kubeconfig entry (data is written to scratch)."""
    if entry.get(f"{key}-data"):
        path = scratch / key
        path.write_bytes(base64.b64decode(entry[f"{key}-data"]))
        return str(path)
    if entry.get(key):
        path = Path(entry[key])
        return str(path if path.is_absolute() else base / path)
    return None


def load_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext, str | None]:
    """(server URL, TLS context with the client certificate, bearer token) of the current context."""
    config = yaml.safe_load(path.read_text())
    current = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    base = path.parent.resolve()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        ca = _material(cluster, "certificate-authority", base, scratch)
        ctx = ssl.create_default_context(cafile=ca)
        cert = _material(user, "client-certificate", base, scratch)
        key = _material(user, "client-key", base, scratch)
        if cert:
            ctx.load_cert_chain(cert, key)
    return cluster["server"].rstrip("/"), ctx, user.get("token")


def ca_bytes(path: Path) -> bytes:
    """The CA certificate (PEM) the kubeconfig trusts."""
    config = yaml.safe_load(path.read_text())
    current = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    if cluster.get("certificate-authority-data"):
        return base64.b64decode(cluster["certificate-authority-data"])
    ca = Path(cluster["certificate-authority"])
    return (ca if ca.is_absolute() else path.parent / ca).read_bytes()


class Kube:
    def __init__(self, kubeconfig: Path):
        self.server, self._ssl, token = load_kubeconfig(kubeconfig)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                headers={**self._headers, "User-Agent": "pilotage-nodeagent"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method,
            self.server + path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            if response.status >= 400:
                try:
                    status = json.loads(text)
                    raise ApiError(
                        response.status, status.get("message", text), status.get("reason", "")
                    )
                except ValueError:
                    raise ApiError(response.status, text) from None
            return json.loads(text) if text else {}

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    async def delete(self, path: str, body: Any = None) -> dict[str, Any]:
        return await self.request("DELETE", path, body=body)


Handler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class Informer:
    """List, then watch from the list's resourceVersion; resume after a dropped stream, relist on 410."""

    def __init__(self, kube: Kube, path: str, handler: Handler, **params: str):
        self.kube = kube
        self.path = path
        self.params = params
        self.handler = handler
        self.items: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()

    @staticmethod
    def key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta.get('namespace', '')}/{meta['name']}"

    async def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        try:
            result = self.handler(kind, obj)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("handler failed on %s %s %s", kind, self.path, self.key(obj))

    async def _relist(self) -> str:
        listing = await self.kube.get(self.path, **self.params)
        fresh = {}
        for obj in listing.get("items", []):
            fresh[self.key(obj)] = obj
        gone = [obj for key, obj in self.items.items() if key not in fresh]
        self.items = fresh
        for obj in gone:
            await self._emit("DELETED", obj)
        for obj in fresh.values():
            await self._emit("MODIFIED", obj)
        self.synced.set()
        return str(listing["metadata"]["resourceVersion"])

    async def run(self) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._relist()
                version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except _Gone:
                log.info("watch %s: 410 Gone, relisting", self.path)
                version = None
            except Exception as exc:
                log.warning("watch %s: %s; resuming", self.path, exc)
                await asyncio.sleep(1)

    async def _watch(self, version: str) -> str:
        params = {
            **self.params,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        async with self.kube.session.get(
            self.kube.server + self.path,
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=330),
        ) as response:
            if response.status == 410:
                raise _Gone()
            if response.status >= 400:
                raise ApiError(response.status, await response.text())
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise ApiError(int(obj.get("code", 500)), obj.get("message", ""))
                version = obj["metadata"].get("resourceVersion", version)
                if kind == "BOOKMARK":
                    continue
                key = self.key(obj)
                if kind == "DELETED":
                    self.items.pop(key, None)
                else:
                    self.items[key] = obj
                await self._emit(kind, obj)
        return version


class _Gone(Exception):
    pass


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
