"""A thin JSON client over the kubernetes package's ApiClient: plain dicts in and out.

Every call names its resource and verb, and is recorded in ``calls``, so the set of API
calls the operator makes is observable (``rbac.py`` is checked against it in tests).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Res:
    """An API resource: group ('' for core), version, plural."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if sub is not None:
            base += f"/{sub}"
        return base


CONFIGMAPS = Res("", "v1", "configmaps")
SECRETS = Res("", "v1", "secrets")
SERVICES = Res("", "v1", "services")
PODS = Res("", "v1", "pods")
EVENTS = Res("", "v1", "events")
DEPLOYMENTS = Res("apps", "v1", "deployments")
JOBS = Res("batch", "v1", "jobs")


def pilotage(plural: str) -> Res:
    return Res("pilotage.dev", "v1alpha1", plural)


class KubeError(Exception):
    """An API call that failed, with the HTTP status and the server's message, and the call
    (verb, `group/resource`, namespace) when known."""

    def __init__(
        self,
        status: int,
        message: str,
        verb: str = "",
        resource: str = "",
        namespace: str | None = None,
    ):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.verb = verb
        self.resource = resource
        self.namespace = namespace

    @property
    def namespace_terminating(self) -> bool:
        """403 because the namespace is being deleted ("unable to create new content in
        namespace X because it is being terminated"): not a refusal of the operator's
        RBAC, and nothing to report, the resource goes with its namespace."""
        return self.status == 403 and "because it is being terminated" in self.message

    @property
    def forbidden(self) -> bool:
        """A 403 that RBAC (or an admission rule) gave: the operator lacks a permission."""
        return self.status == 403 and not self.namespace_terminating

    def call(self) -> str:
        """The call that failed, e.g. `create batch/jobs in namespace ml`."""
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}{where}"


class Kube:
    """JSON REST calls through one shared ApiClient (created once at start-up)."""

    def __init__(self, api_client: k8s.ApiClient, timeout: float = 10.0):
        self.api = api_client
        self.timeout = timeout
        self.calls: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def _call(
        self,
        verb: str,
        res: Res,
        method: str,
        path: str,
        *,
        sub: str | None = None,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        resource = res.plural + (f"/{sub}" if sub else "")
        with self._lock:
            self.calls.add((res.group, resource, verb))
        try:
            resp = self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
        except ApiException as exc:
            message = str(exc.reason)
            with contextlib.suppress(ValueError):
                message = json.loads(exc.body or "{}").get("message") or message
            named = f"{res.group}/{resource}" if res.group else resource
            raise KubeError(
                int(exc.status or 0), message, verb, named, _namespace_of(path)
            ) from None
        data = resp.data
        return json.loads(data) if data else {}

    def get(self, res: Res, namespace: str | None, name: str) -> Obj | None:
        try:
            return self._call("get", res, "GET", res.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, res: Res, namespace: str | None, selector: str | None = None) -> list[Obj]:
        query = [("labelSelector", selector)] if selector else []
        doc = self._call("list", res, "GET", res.path(namespace), query=query)
        items: list[Obj] = doc.get("items") or []
        return items

    def create(self, res: Res, namespace: str | None, body: Mapping[str, Any]) -> Obj | None:
        """Create; None when it already exists (create-if-absent)."""
        try:
            return self._call("create", res, "POST", res.path(namespace), body=body)
        except KubeError as exc:
            if exc.status == 409:
                return None
            raise

    def patch(
        self, res: Res, namespace: str | None, name: str, body: Obj, status: bool = False
    ) -> Obj:
        sub = "status" if status else None
        path = res.path(namespace, name, sub)
        return self._call("patch", res, "PATCH", path, sub=sub, body=body, content_type=MERGE_PATCH)

    def delete(self, res: Res, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        options = {"propagationPolicy": "Background"}
        try:
            self._call("delete", res, "DELETE", res.path(namespace, name), body=options)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _namespace_of(path: str) -> str | None:
    parts = path.split("/")
    if "namespaces" in parts[:-1]:
        return parts[parts.index("namespaces") + 1]
    return None
