"""An in-process Kubernetes API server for operator tests: kmock's emulator, completed.

kmock 0.8 stores objects and streams watch events, but as shipped it lacks what a
real kopf operator relies on (see docs/testing.md). This subclass takes over every
write (create, patch, replace, delete) and the list/watch reads, and adds:

* uid, resourceVersion (one cluster-wide counter), generation, creationTimestamp,
  metadata.namespace from the URL, generateName;
* the status subresource: a main write keeps status, a /status write changes only status;
* JSON patch (a failed ``test`` answers 422), merge patch (strategic merge is treated as
  a merge patch), PUT with a resourceVersion conflict (409), no-op writes that change
  neither resourceVersion nor emit an event;
* label and field selectors on list and watch; watch from a resourceVersion (events
  after it are replayed) and ``timeoutSeconds``;
* finalizers, deletionTimestamp and owner-reference garbage collection (background);
* CustomResourceDefinitions become discoverable when created, and their structural
  schema prunes unknown fields like a real API server (so an undeclared status field
  silently disappears here too);
* ``/api/v1/namespaces`` (kmock's path parser fails on it) with a seeded ``default``;
* optionally, bearer-token authentication (``Cluster(token=...)``): a request without
  ``Authorization: Bearer <token>`` gets 401, as from a real API server;
* optionally, an RBAC refusal (``cluster.forbid = {("PATCH", "modeldeployments")}``): such
  a request gets 403 Forbidden with the API server's message.

kmock internals are touched here; pin kmock exactly and keep tests/operator/test_emulator.py
(the guard test) green when upgrading.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import re
import secrets
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import dicts, enums, parsing, rendering

Obj = dict[str, Any]
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAMESPACES = kmock.resource("", "v1", "namespaces")
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(?:/([^/]+))?(?:/(status|finalize))?")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={})


# ---- selectors -------------------------------------------------------------------------


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        terms.append(current.strip())
    return terms


def label_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """A predicate over labels for a Kubernetes label-selector string."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        if m := re.fullmatch(r"([^!=\s]+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",")}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(\S*)", term):
            key, op, value = m[1], m[2], m[3]
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            checks.append(lambda labels, k=term[1:]: k not in labels)
        else:
            checks.append(lambda labels, k=term: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def field_selector(selector: str) -> Callable[[Obj], bool]:
    """metadata.name / metadata.namespace equality, the field selectors kopf and we use."""
    pairs = [term.split("=", 1) for term in _split_terms(selector)]

    def check(obj: Obj) -> bool:
        for path, value in pairs:
            node: Any = obj
            for part in path.rstrip("=").split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if str(node) != value.lstrip("="):
                return False
        return True

    return check


# ---- structural-schema pruning ---------------------------------------------------------


def prune(value: Any, schema: dict[str, Any]) -> Any:
    """Drop fields a structural schema does not declare, as the API server does."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            return {k: prune(v, props[k]) for k, v in value.items() if k in props}
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            return {k: prune(v, additional) for k, v in value.items()}
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return value
        return {} if schema.get("type") == "object" else value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"]) for v in value]
    return value


# ---- the emulator ----------------------------------------------------------------------


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator with the API-server behaviours a kopf operator needs."""

    _revision: int = attrs.field(default=0, init=False)
    _history: dict[Any, list[tuple[int, Obj]]] = attrs.field(
        factory=lambda: defaultdict(list), init=False
    )
    _watchers: list[tuple[Any, asyncio.Queue[Obj]]] = attrs.field(factory=list, init=False)
    _schemas: dict[Any, dict[str, Any]] = attrs.field(factory=dict, init=False)
    token: str | None = None
    """When set, every request must carry ``Authorization: Bearer <token>``."""
    unauthorized: list[str] = attrs.field(factory=list, init=False)
    """``METHOD path (User-Agent)`` of every request refused for lack of the token."""
    forbid: set[tuple[str, str]] = attrs.field(factory=set)
    """(HTTP method, resource plural) pairs answered 403, as RBAC would."""
    terminating: set[str] = attrs.field(factory=set)
    """Namespaces being deleted: creating anything in them is answered 403, as the real
    API server's NamespaceLifecycle admission does."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        self._store(
            NAMESPACES,
            None,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
            "ADDED",
        )

    # ---- public helpers for tests --------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """The stored object (a copy), or None."""
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        res = kmock.resource(resource)
        return [
            copy.deepcopy(obj.raw)
            for (r, ns, _), obj in self.objects.items()
            if r == res and not obj.deleted and (namespace is None or ns == namespace)
        ]

    def api_calls(self, user_agents: tuple[str, ...]) -> set[tuple[str, str, str]]:
        """(group, resource[/subresource], verb) of every API request made by clients whose
        User-Agent starts with one of ``user_agents`` (discovery requests left out)."""
        calls = set()
        for request in self:
            agent = request.headers.get("User-Agent", "")
            if request.resource is None or request.resource.plural is None:
                continue
            if not agent.startswith(user_agents):
                continue
            method, named = request.method, request.name is not None
            if method == enums.method.GET:
                verb = (
                    "watch" if request.params.get("watch") == "true" else "get" if named else "list"
                )
            else:
                verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[
                    method.value
                ]
            plural = request.resource.plural
            if request.subresource:
                plural += f"/{request.subresource}"
            calls.add((request.resource.group or "", plural, verb))
        return calls

    # ---- request entry ------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if self.token is not None and (
            raw_request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            agent = raw_request.headers.get("User-Agent", "")
            self.unauthorized.append(f"{raw_request.method} {raw_request.path} ({agent})")
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
            body = {**status, "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
            return aiohttp.web.json_response(body, status=401)
        for method, plural in self.forbid:
            if raw_request.method == method and re.search(rf"/{plural}(/|$)", raw_request.path):
                body = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": f'{plural} is forbidden: User "tester" cannot {method.lower()} '
                    f"resource {plural!r}",
                    "reason": "Forbidden",
                    "code": 403,
                }
                return aiohttp.web.json_response(body, status=403)
        for namespace in self.terminating:
            if raw_request.method == "POST" and f"/namespaces/{namespace}/" in raw_request.path:
                plural = raw_request.path.rstrip("/").rsplit("/", 1)[-1]
                body = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": f'{plural} "x" is forbidden: unable to create new content in '
                    f"namespace {namespace} because it is being terminated",
                    "reason": "Forbidden",
                    "code": 403,
                }
                return aiohttp.web.json_response(body, status=403)
        match = _NAMESPACE_PATH.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        # kmock's path parser raises on /api/v1/namespaces[/NAME]: parse it here.
        await raw_request.read()
        try:
            data = await raw_request.json()
        except ValueError:
            data = None
        method = enums.method(raw_request.method)
        path = parsing.ParsedPath("", "v1", "namespaces", None, match[1], match[2])
        request = rendering.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            data=data,
            body=await raw_request.read(),
            action=parsing.guess_k8s(path, method, dict(raw_request.query)),
            resource=NAMESPACES,
            name=match[1],
            subresource=match[2],
        )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as exc:
            return await self._render_error(exc)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        method = request.method
        write: Callable[[rendering.Request], Obj] | None = None
        if method == enums.method.POST and request.name is None:
            write = self._create
        elif method == enums.method.PATCH and request.name is not None:
            write = self._patch
        elif method == enums.method.PUT and request.name is not None:
            write = self._replace
        elif method == enums.method.DELETE and request.name is not None:
            write = self._delete
        if write is None:
            return await super()._handle(request)
        if request.subresource not in (None, "status"):
            raise _error(404, "NotFound", f"subresource {request.subresource} is not served")
        async with self._lock:
            result = write(request)
        return aiohttp.web.json_response(result, status=201 if write == self._create else 200)

    # ---- storage ------------------------------------------------------------------------

    def _has_status(self, resource: Any) -> bool:
        # NB: kmock's ResourcesArray creates entries on a missing key: test membership first.
        return resource in self.resources and "status" in self.resources[resource].subresources

    def _namespaced(self, resource: Any) -> bool:
        return resource not in self.resources or self.resources[resource].namespaced is not False

    def _current(self, resource: Any, namespace: str | None, name: str) -> Obj:
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            raise _error(404, "NotFound", f'{resource.plural} "{name}" not found')
        return copy.deepcopy(self.objects[key].raw)

    def _store(self, resource: Any, namespace: str | None, obj: Obj, event: str) -> Obj:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        key = (resource, namespace, obj["metadata"]["name"])
        if event == "DELETED":
            self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].history.append(obj)
        else:
            self.objects[key] = obj
        message = {"type": event, "object": copy.deepcopy(obj)}
        self._history[resource].append((self._revision, message))
        for res, queue in self._watchers:
            if res == resource:
                queue.put_nowait(message)
        if resource == CRDS and event == "ADDED":
            self._register_crd(obj)
        return obj

    def _register_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[resource] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                subresources=set((version.get("subresources") or {}).keys()),
            )
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                self._schemas[resource] = schema

    @staticmethod
    def _encode_string_data(resource: Any, obj: Obj) -> Obj:
        """Secrets: stringData is write-only, merged into base64 data (as the server does)."""
        if resource.plural == "secrets" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for key, value in (obj.pop("stringData") or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        return obj

    def _pruned(self, resource: Any, obj: Obj) -> Obj:
        schema = self._schemas.get(resource)
        if schema is None:
            return obj
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        props = {k: v for k, v in schema.get("properties", {}).items() if k in body}
        pruned = prune(body, {**schema, "properties": props})
        return {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj} | pruned

    # ---- writes -------------------------------------------------------------------------

    def _create(self, request: rendering.Request) -> Obj:
        obj: Obj = copy.deepcopy(request.data or {})
        meta = obj.setdefault("metadata", {})
        resource = request.resource
        namespace = request.namespace if self._namespaced(resource) else None
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise _error(400, "BadRequest", "the namespace of the object does not match the URL")
        if namespace:
            meta["namespace"] = namespace
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _error(422, "Invalid", "metadata.name: Required value")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        key = (resource, namespace, meta["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise _error(409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists')
        if self._has_status(resource):
            obj.pop("status", None)
        meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
        for field in ("deletionTimestamp", "resourceVersion"):
            meta.pop(field, None)
        obj = self._encode_string_data(resource, self._pruned(resource, obj))
        return self._store(resource, namespace, obj, "ADDED")

    def _patch(self, request: rendering.Request) -> Obj:
        old = self._current(request.resource, request.namespace, request.name or "")
        content_type = request.headers.get("Content-Type", "")
        if APPLY_PATCH in content_type:
            raise _error(415, "UnsupportedMediaType", "server-side apply is not emulated")
        try:
            if JSON_PATCH in content_type:
                patched = jsonpatch.apply_patch(old, request.data or [], in_place=False)
            else:
                patch = request.data or {}
                wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
                if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                    raise _error(409, "Conflict", "the object has been modified")
                patched = dicts.merge_patch_dict(old, patch)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise _error(422, "Invalid", f"the JSON patch test failed: {exc}") from exc
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, ValueError) as exc:
            raise _error(422, "Invalid", f"the patch cannot be applied: {exc}") from exc
        return self._update(request, old, dict(patched))

    def _replace(self, request: rendering.Request) -> Obj:
        old = self._current(request.resource, request.namespace, request.name or "")
        new: Obj = copy.deepcopy(request.data or {})
        wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", "the object has been modified; apply to the latest")
        return self._update(request, old, new)

    def _update(self, request: rendering.Request, old: Obj, new: Obj) -> Obj:
        resource = request.resource
        if request.subresource == "status":
            new = {**old, "status": new.get("status")}
            if new["status"] is None:
                del new["status"]
        elif self._has_status(resource):
            new.pop("status", None)
            if "status" in old:
                new["status"] = old["status"]
        meta = new.setdefault("metadata", {})
        for field in ("uid", "name", "namespace", "creationTimestamp", "deletionTimestamp"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        meta["generation"] = old["metadata"].get("generation", 1)
        new = self._encode_string_data(resource, self._pruned(resource, new))
        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event
        body_keys = set(new) | set(old)
        if any(new.get(k) != old.get(k) for k in body_keys - {"metadata", "status", "kind"}):
            meta["generation"] += 1
        stored = self._store(resource, request.namespace, new, "MODIFIED")
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(resource, request.namespace, stored)
        return stored

    def _delete(self, request: rendering.Request) -> Obj:
        resource, namespace = request.resource, request.namespace
        old = self._current(resource, namespace, request.name or "")
        options = request.data if isinstance(request.data, dict) else {}
        policy = options.get("propagationPolicy") or request.params.get("propagationPolicy")
        return self._delete_object(resource, namespace, old, orphan=policy == "Orphan")

    def _delete_object(self, resource: Any, namespace: str | None, old: Obj, orphan: bool) -> Obj:
        meta = old["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old
            meta["deletionTimestamp"] = _now()
            return self._store(resource, namespace, old, "MODIFIED")
        return self._remove(resource, namespace, old, orphan)

    def _remove(self, resource: Any, namespace: str | None, obj: Obj, orphan: bool = False) -> Obj:
        removed = self._store(resource, namespace, copy.deepcopy(obj), "DELETED")
        if not orphan:
            self._collect_dependents(obj["metadata"]["uid"])
        return removed

    def _collect_dependents(self, owner_uid: str) -> None:
        """Background garbage collection, done at once: dependents of a deleted owner go."""
        dependents = [
            (res, ns, copy.deepcopy(obj.raw))
            for (res, ns, _), obj in list(self.objects.items())
            if not obj.deleted
            and any(
                ref.get("uid") == owner_uid
                for ref in obj.raw.get("metadata", {}).get("ownerReferences", [])
            )
        ]
        for res, ns, dependent in dependents:
            self._delete_object(res, ns, dependent, orphan=False)

    # ---- reads --------------------------------------------------------------------------

    def _matcher(self, request: rendering.Request) -> Callable[[Obj], bool]:
        labels = label_selector(request.params.get("labelSelector", ""))
        fields = field_selector(request.params.get("fieldSelector", ""))
        namespace = request.namespace if self._namespaced(request.resource) else None

        def matches(obj: Obj) -> bool:
            meta = obj.get("metadata", {})
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if request.name is not None and meta.get("name") != request.name:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        return matches

    def _known(self, resource: Any) -> None:
        if resource not in self._get_resources():
            raise kmock.KubernetesResourceNotFoundError()

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        self._known(request.resource)
        matches = self._matcher(request)
        async with self._lock:
            items = [
                copy.deepcopy(obj.raw)
                for (res, _, _), obj in self.objects.items()
                if res == request.resource and not obj.deleted and matches(obj.raw)
            ]
            revision = str(self._revision)
        return {
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": revision},
            "items": items,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now: the stream may stay silent for long
        matches = self._matcher(request)
        since = int(request.params.get("resourceVersion") or 0)
        timeout = request.params.get("timeoutSeconds")
        queue: asyncio.Queue[Obj] = asyncio.Queue()
        watcher = (request.resource, queue)
        async with self._lock:
            if since:
                backlog = [e for rv, e in self._history[request.resource] if rv > since]
            else:
                backlog = [
                    {"type": "ADDED", "object": copy.deepcopy(obj.raw)}
                    for (res, _, _), obj in self.objects.items()
                    if res == request.resource and not obj.deleted
                ]
            self._watchers.append(watcher)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout) if timeout else None
        try:
            for event in backlog:
                if matches(event["object"]):
                    yield event
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), min(remaining or 0.1, 0.1))
                except TimeoutError:
                    # aiohttp does not cancel a handler whose client left: end the stream
                    # like an API server does, or the handler waits for the next event.
                    transport = request._raw_request.transport if request._raw_request else None
                    if transport is None or transport.is_closing():
                        return
                    continue
                if matches(event["object"]):
                    yield event
        finally:
            self._watchers.remove(watcher)
