"""Where the dashboard reads resources and events, and how it acts: one interface, two
platforms — the embedded runtime's local store, or a cluster through the user's kubeconfig.

Actions go through `pilotage.local.cli.request_action`, the function the CLI's
`pilotage promote|abort|retry|retrain` calls, so a button does exactly what the command does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pilotage.api.modelcard import CARD_FILE
from pilotage.local.cli import ACTIONS, request_action
from pilotage.local.errors import CliError, Forbidden
from pilotage.local.store import Store, StoreError
from pilotage.storage import StorageError, join, read_bytes

KINDS = ("Dataset", "TrainingJob", "ModelDeployment", "DriftMonitor")
PLURALS = {
    "Dataset": "datasets",
    "TrainingJob": "trainingjobs",
    "ModelDeployment": "modeldeployments",
    "DriftMonitor": "driftmonitors",
}
MAX_CARD_BYTES = 8 * 1024 * 1024


class SourceError(Exception):
    """Reading or acting failed; ``status`` is the HTTP status the page gets."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Event:
    time: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class ActionResult:
    message: str
    warning: str | None = None


class Source(Protocol):
    where: str
    """Shown in the page header: the state directory or the cluster."""

    def resources(self) -> list[dict[str, Any]]:
        """Every resource of the four kinds, as the API shows it (apiVersion … status)."""
        ...

    def events(self, kind: str, namespace: str, name: str) -> list[Event]: ...

    def act(self, action: str, namespace: str, name: str, full: bool = False) -> ActionResult:
        """Run a manual action; `SourceError` (403 when forbidden) when refused."""
        ...


def read_model_card(uri: str) -> dict[str, Any] | None:
    """The model.json of a model directory, when this machine can read its URI."""
    import json

    try:
        raw = read_bytes(join(uri, CARD_FILE))
    except (StorageError, OSError, ValueError):
        return None
    if len(raw) > MAX_CARD_BYTES:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def check_action(action: str) -> None:
    if action not in ACTIONS:
        raise SourceError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", 400)


class LocalSource:
    """The embedded runtime's state directory (the store `pilotage up` reconciles)."""

    def __init__(self, directory: Path, namespace: str | None = None) -> None:
        self.store = Store(directory)
        self.namespace = namespace
        self.where = f"state {directory.resolve()}"

    def resources(self) -> list[dict[str, Any]]:
        try:
            return [r.dump() for r in self.store.objects(namespace=self.namespace)]
        except StoreError as exc:
            raise SourceError(str(exc)) from exc

    def events(self, kind: str, namespace: str, name: str) -> list[Event]:
        try:
            found = self.store.events(kind, name, namespace)
        except StoreError as exc:
            raise SourceError(str(exc)) from exc
        return [Event(e.time, e.type, e.reason, e.message) for _, e in found]

    def act(self, action: str, namespace: str, name: str, full: bool = False) -> ActionResult:
        check_action(action)
        try:
            outcome = request_action(action, name, namespace, full=full, store=self.store)
        except StoreError as exc:
            raise SourceError(str(exc), 404 if "not found" in str(exc) else 409) from exc
        except CliError as exc:
            raise SourceError(str(exc), 400) from exc
        return ActionResult(outcome.line, outcome.warning)


class KubeSource:
    """A cluster through the user's kubeconfig: reads and acts with the user's own
    permissions, as `kubectl` does (a 403 is shown, never worked around).

    ``namespaces``: the namespaces listed (None: all, which needs a cluster-wide list
    grant); ``in_cluster``: the pod's service account instead of a kubeconfig.
    """

    def __init__(
        self,
        namespaces: list[str] | None,
        context: str | None = None,
        in_cluster: bool = False,
    ) -> None:
        try:
            from kubernetes import client

            from pilotage.kubeconnection import (
                ConnectionError_,
                client_configuration,
                kubeconfig_configuration,
            )
        except ImportError as exc:
            raise CliError(
                "--kube needs the kubernetes client: install pilotage[operator]"
            ) from exc
        try:
            configuration = (
                client_configuration() if in_cluster else kubeconfig_configuration(context)
            )
        except ConnectionError_ as exc:
            raise CliError(str(exc)) from exc
        self._client = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(self._client)
        self._core = client.CoreV1Api(self._client)
        self.namespaces = namespaces
        self.context = context
        self.in_cluster = in_cluster
        shown = ", ".join(namespaces) if namespaces else "all namespaces"
        self.where = f"cluster {configuration.host}, {shown}"

    def close(self) -> None:
        self._client.close()

    def _refused(self, exc: Any, what: str) -> SourceError:
        status = int(getattr(exc, "status", 0) or 0)
        if status == 403:
            return SourceError(f"forbidden: the kubeconfig's user may not {what} (HTTP 403)", 403)
        if status == 404:
            return SourceError(f"not found: {what} (HTTP 404; is the CRD installed?)", 404)
        reason = getattr(exc, "reason", None) or exc
        return SourceError(f"the API server refused to {what}: HTTP {status} {reason}", 502)

    def resources(self) -> list[dict[str, Any]]:
        from kubernetes.client.rest import ApiException

        from pilotage.api import GROUP, VERSION

        out: list[dict[str, Any]] = []
        for kind in KINDS:
            plural = PLURALS[kind]
            scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
            for namespace in scopes:
                where = f"in namespace {namespace!r}" if namespace else "in all namespaces"
                try:
                    if namespace is None:
                        listed = self._custom.list_cluster_custom_object(GROUP, VERSION, plural)
                    else:
                        listed = self._custom.list_namespaced_custom_object(
                            GROUP, VERSION, namespace, plural
                        )
                except ApiException as exc:
                    raise self._refused(exc, f"list {plural} {where}") from exc
                except OSError as exc:
                    raise SourceError(f"cannot reach the API server: {exc}") from exc
                for item in listed.get("items") or []:
                    item.setdefault("kind", kind)
                    out.append(item)
        return out

    def events(self, kind: str, namespace: str, name: str) -> list[Event]:
        from kubernetes.client.rest import ApiException

        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        try:
            listed = self._core.list_namespaced_event(namespace, field_selector=selector)
        except ApiException as exc:
            if getattr(exc, "status", 0) == 403:
                return []  # events are extra: a user who may not read them still sees the rest
            raise self._refused(exc, f"list events in namespace {namespace!r}") from exc
        except OSError as exc:
            raise SourceError(f"cannot reach the API server: {exc}") from exc
        out = []
        for e in listed.items or []:
            when = e.last_timestamp or e.event_time or e.first_timestamp
            stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else ""
            out.append(Event(stamp, e.type or "", e.reason or "", e.message or ""))
        return sorted(out, key=lambda e: e.time)

    def act(self, action: str, namespace: str, name: str, full: bool = False) -> ActionResult:
        check_action(action)
        if self.namespaces and namespace not in self.namespaces:
            raise SourceError(f"this dashboard shows only {', '.join(self.namespaces)}", 400)
        try:
            outcome = request_action(
                action,
                name,
                namespace,
                full=full,
                kube=True,
                context=self.context,
                in_cluster=self.in_cluster,
            )
        except Forbidden as exc:
            raise SourceError(str(exc), 403) from exc
        except CliError as exc:
            raise SourceError(str(exc), 404 if "not found" in str(exc) else 502) from exc
        return ActionResult(outcome.line, outcome.warning)
