"""The local commands: `pilotage up|apply|get|describe|delete|promote|abort|retry|retrain|refresh`.

They all work on a state directory: ``--state-dir``, else ``$PILOTAGE_STATE_DIR``,
else ``.pilotage`` in the current directory. `promote`, `abort` and `retry` set the
manual-action annotations the ModelDeployment reconciler acts on, `retrain` the
DriftMonitor's manual trigger, `refresh` a Dataset's re-profiling request; with
``--kube`` they patch the same annotation on a cluster through the kubeconfig.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from pilotage.api import KIND_ORDER, KINDS, ManifestError, Resource, parse_resource
from pilotage.api.dataset import Dataset
from pilotage.api.driftmonitor import DriftMonitor
from pilotage.api.manifests import load_documents, read_manifest_text
from pilotage.api.modeldeployment import ModelDeployment
from pilotage.control.common import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_REFRESH,
    ANNOTATION_RETRAIN,
    ANNOTATION_RETRY,
)
from pilotage.control.modeldeployment import FULL_PROMOTION
from pilotage.local.errors import CliError
from pilotage.local.store import DEFAULT_NAMESPACE, NotFound, Store, StoreError
from pilotage.local.view import describe as describe_text
from pilotage.local.view import get_table, resolve_kind

STATE_ENV = "PILOTAGE_STATE_DIR"
DEFAULT_STATE_DIR = ".pilotage"


def state_dir(given: str | None) -> Path:
    return Path(given or os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        help=f"state directory (default ${STATE_ENV} or ./{DEFAULT_STATE_DIR})",
    )
    p.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help="namespace (default: default)"
    )


def _fail(command: str, message: str, code: int = 1) -> int:
    print(f"pilotage {command}: error: {message}", file=sys.stderr)
    return code


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.suffix in (".yaml", ".yml", ".json"))
    return [path]


def load_manifests(paths: Sequence[str]) -> list[Resource]:
    """Validated resources from files/directories; every error found, each on its own line."""
    errors: list[str] = []
    resources: list[Resource] = []
    for given in paths:
        if not Path(given).exists():
            errors.append(f"{given}: no such file or directory")
            continue
        for f in _manifest_files(Path(given)):
            try:
                docs = load_documents(read_manifest_text(f), str(f))
            except ManifestError as exc:
                errors.append(str(exc))
                continue
            for i, doc in enumerate(docs):
                source = f"{f}#{i}"
                try:
                    resources.append(parse_resource(doc, source))
                except ManifestError as exc:
                    errors.extend(_one_per_line(str(exc), doc, source))
    if errors:
        raise CliError("\n".join(errors))
    if not resources:
        raise CliError(f"no resources in {', '.join(paths)} (no YAML document with a kind)")
    seen: set[tuple[str, str, str]] = set()
    for res in resources:
        key = (res.kind, res.metadata.namespace or DEFAULT_NAMESPACE, res.name)
        if key in seen:
            raise CliError(f"{res.kind}/{res.name} appears twice in the manifests")
        seen.add(key)
    return sorted(resources, key=lambda r: KIND_ORDER.index(r.kind))


def _one_per_line(message: str, doc: object, source: str) -> list[str]:
    """Split a resource's joined field errors (``a: x; b: y``) into lines that each say where."""
    if not isinstance(doc, dict):
        return [message]
    prefix = f"{source}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name', '?')}: "
    if not message.startswith(prefix):
        return [message]
    return [prefix + part for part in message[len(prefix) :].split("; ")]


def apply_resources(store: Store, resources: Sequence[Resource], namespace: str) -> list[str]:
    lines = []
    for res in resources:
        if res.metadata.namespace is None:
            res.metadata.namespace = namespace
        result = store.apply(res)
        lines.append(f"{res.kind.lower()}/{res.name} {result.outcome}")
    return lines


def _open(args: argparse.Namespace) -> Store:
    return Store(state_dir(args.state_dir))


# ---------------------------------------------------------------------------------------


def apply(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pilotage apply", description="Store manifests in the local state."
    )
    p.add_argument(
        "-f", "--filename", action="append", required=True, help="file or directory (repeatable)"
    )
    _common(p)
    args = p.parse_args(argv)
    try:
        resources = load_manifests(args.filename)
        store = _open(args)
        for line in apply_resources(store, resources, args.namespace):
            print(line)
    except (CliError, StoreError) as exc:
        for line in str(exc).splitlines():
            print(f"pilotage apply: error: {line}", file=sys.stderr)
        return 1
    return 0


def get(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pilotage get", description="List resources in the local state."
    )
    p.add_argument("kind", nargs="?", help="kind or short name (ds, tj, md, dm); all when absent")
    p.add_argument("name", nargs="?", help="one resource")
    p.add_argument("-o", "--output", choices=("table", "wide", "yaml", "json"), default="table")
    _common(p)
    args = p.parse_args(argv)
    kinds = list(KIND_ORDER)
    if args.kind:
        kind = resolve_kind(args.kind)
        if kind is None:
            return _fail(
                "get",
                f"unknown kind {args.kind!r}; use one of {', '.join(KINDS)} (or ds, tj, md, dm)",
            )
        kinds = [kind]
    try:
        store = _open(args)
        found: dict[str, list[Resource]] = {}
        for kind in kinds:
            if args.name:
                found[kind] = [store.get(kind, args.name, args.namespace)]
            else:
                found[kind] = store.objects(kind, args.namespace)
    except StoreError as exc:
        return _fail("get", str(exc))
    everything = [r for rs in found.values() for r in rs]
    if args.output in ("yaml", "json"):
        docs = [r.dump() for r in everything]
        if args.output == "json":
            print(json.dumps(docs[0] if args.name else {"items": docs}, indent=2))
        else:
            print(yaml.safe_dump_all(docs, sort_keys=False), end="")
        return 0
    if not everything:
        print(f"No resources found in namespace {args.namespace} ({state_dir(args.state_dir)}).")
        return 0
    blocks = [
        (kind if len(kinds) > 1 else None, get_table(kind, rs, wide=args.output == "wide"))
        for kind, rs in found.items()
        if rs
    ]
    print("\n\n".join(f"{title}\n{table}" if title else table for title, table in blocks))
    return 0


def describe(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pilotage describe", description="Show one resource with its events."
    )
    p.add_argument("kind", help="kind or short name (ds, tj, md, dm)")
    p.add_argument("name")
    _common(p)
    args = p.parse_args(argv)
    kind = resolve_kind(args.kind)
    if kind is None:
        return _fail("describe", f"unknown kind {args.kind!r}; use one of {', '.join(KINDS)}")
    try:
        store = _open(args)
        res = store.get(kind, args.name, args.namespace)
        events = [e for _, e in store.events(kind, args.name, args.namespace)]
    except StoreError as exc:
        return _fail("describe", str(exc))
    print(describe_text(res, events))
    return 0


def delete(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pilotage delete",
        description="Delete resources (and what they own) from the local state; a running "
        "`pilotage up` stops their processes.",
    )
    p.add_argument("kind", nargs="?", help="kind or short name")
    p.add_argument("names", nargs="*", help="names")
    p.add_argument("-f", "--filename", action="append", help="delete what these manifests name")
    _common(p)
    args = p.parse_args(argv)
    targets: list[tuple[str, str]] = []
    try:
        if args.filename:
            targets = [(r.kind, r.name) for r in load_manifests(args.filename)]
        elif args.kind and args.names:
            kind = resolve_kind(args.kind)
            if kind is None:
                raise CliError(f"unknown kind {args.kind!r}; use one of {', '.join(KINDS)}")
            targets = [(kind, n) for n in args.names]
        else:
            raise CliError("say what to delete: KIND NAME... or -f FILE")
        store = _open(args)
        code = 0
        for kind, name in reversed(targets):
            try:
                for gone in store.delete(kind, name, args.namespace):
                    print(f"{gone.split('/')[0].lower()}/{gone.split('/')[1]} deleted")
            except NotFound as exc:
                print(f"pilotage delete: error: {exc}", file=sys.stderr)
                code = 1
        return code
    except (CliError, StoreError) as exc:
        for line in str(exc).splitlines():
            print(f"pilotage delete: error: {line}", file=sys.stderr)
        return 1


# -- manual rollout actions ---------------------------------------------------------------


def action_value(full: bool = False) -> str:
    """The annotation value: a fresh token, so that a new request differs from the last one
    handled (the reconciler remembers handled values in ``status.handledActions``).

    A full promotion is ``full:<token>`` (see ``is_full_promotion``), so two
    ``promote --full`` in a row are two requests.
    """
    token = uuid.uuid4().hex[:12]
    return f"{FULL_PROMOTION}:{token}" if full else token


@dataclass(frozen=True)
class ActionTarget:
    kind: type[Resource]
    annotation: str
    with_full: bool = False


ACTIONS: dict[str, ActionTarget] = {
    "promote": ActionTarget(ModelDeployment, ANNOTATION_PROMOTE, with_full=True),
    "abort": ActionTarget(ModelDeployment, ANNOTATION_ABORT),
    "retry": ActionTarget(ModelDeployment, ANNOTATION_RETRY),
    "retrain": ActionTarget(DriftMonitor, ANNOTATION_RETRAIN),
    "refresh": ActionTarget(Dataset, ANNOTATION_REFRESH),
}
"""The manual actions: what `pilotage promote|abort|retry|retrain|refresh` and the
dashboard's buttons set (both go through `request_action`)."""


@dataclass(frozen=True)
class ActionOutcome:
    line: str
    """What was done, e.g. ``modeldeployment/iris annotated pilotage.dev/promote=… (where)``."""
    warning: str | None = None
    """Why the request will have no effect (locally, read from the current status)."""


def request_action(
    command: str,
    name: str,
    namespace: str,
    *,
    full: bool = False,
    store: Store | None = None,
    kube: bool = False,
    context: str | None = None,
    in_cluster: bool = False,
) -> ActionOutcome:
    """Set the action's annotation to a fresh token in the local ``store`` or, with
    ``kube``, on the cluster of the kubeconfig. Raises `StoreError` or `CliError`."""
    target = ACTIONS[command]
    kind, annotation = target.kind, target.annotation
    value = action_value(full and target.with_full)
    res: Resource | None = None
    if kube:
        from pilotage.local.kube import annotate

        where = annotate(kind, name, namespace, annotation, value, context, in_cluster)
    else:
        if store is None:
            raise CliError("no local state to act on")
        res = store.set_annotation(kind.KIND, name, annotation, value, namespace)
        where = str(store.state_dir)
    warning = _nothing_to_act_on(annotation, res) if res is not None else None
    return ActionOutcome(
        f"{kind.KIND.lower()}/{name} annotated {annotation}={value} ({where})", warning
    )


def _manual(command: str, argv: list[str]) -> int:
    target = ACTIONS[command]
    kind, annotation = target.kind, target.annotation
    p = argparse.ArgumentParser(
        prog=f"pilotage {command}",
        description=f"Set the {annotation} annotation on a {kind.KIND} to a fresh token "
        "(locally, or with --kube on a cluster).",
    )
    p.add_argument("name", help=f"{kind.KIND} name")
    if target.with_full:
        p.add_argument(
            "--full",
            action="store_true",
            help="promote to 100%% at once (skip the remaining steps)",
        )
    p.add_argument(
        "--kube", action="store_true", help="act on the cluster of the current kubeconfig"
    )
    p.add_argument("--context", help="kubeconfig context (with --kube)")
    _common(p)
    args = p.parse_args(argv)
    try:
        outcome = request_action(
            command,
            args.name,
            args.namespace,
            full=bool(getattr(args, "full", False)),
            store=None if args.kube else _open(args),
            kube=args.kube,
            context=args.context,
        )
    except (StoreError, CliError) as exc:
        return _fail(command, str(exc))
    print(outcome.line)
    if outcome.warning is not None:
        print(
            f"pilotage {command}: warning: {outcome.warning}; the request will have no effect",
            file=sys.stderr,
        )
    return 0


def _nothing_to_act_on(annotation: str, res: Resource) -> str | None:
    """Why a rollout action finds nothing to act on in the current status (the reconciler
    consumes such a request without doing anything), or None."""
    status = res.dump().get("status") or {}
    state = f"{res.kind} {res.name} is {status.get('phase', 'Pending')}"
    stable = (status.get("stable") or {}).get("version")
    state += f", serving {stable}" if stable else ""
    if annotation == ANNOTATION_ABORT and status.get("previous") and not status.get("candidate"):
        return None  # blue-green: switches back to the previous version
    if annotation in (ANNOTATION_PROMOTE, ANNOTATION_ABORT) and not status.get("candidate"):
        return f"{state} with no rollout in progress"
    if annotation == ANNOTATION_RETRY and not status.get("rejectedVersion"):
        return f"{state} and no version was rolled back or aborted"
    return None


def promote(argv: list[str]) -> int:
    return _manual("promote", argv)


def abort(argv: list[str]) -> int:
    return _manual("abort", argv)


def retry(argv: list[str]) -> int:
    return _manual("retry", argv)


def retrain(argv: list[str]) -> int:
    """`pilotage retrain MONITOR`: the DriftMonitor's manual trigger (one retrain per call)."""
    return _manual("retrain", argv)


def refresh(argv: list[str]) -> int:
    """`pilotage refresh DATASET`: profile the Dataset again (e.g. its file changed)."""
    return _manual("refresh", argv)
