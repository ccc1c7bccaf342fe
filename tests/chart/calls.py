"""The Kubernetes API calls the operator makes, found in its code (not read from rbac.py).

Two sources:

* The operator's own calls all go through `pilotage.operator.kube.Kube`
  (`get`/`list`/`create`/`patch`/`delete`, first argument a `Res`). The source of every
  module in `pilotage/operator` is parsed; each `<x>.kube.<verb>(RES, ...)` call is
  resolved to its resource: a module constant (`JOBS = Res(...)`, `DATASETS =
  pilotage(...)`), a parameter of the enclosing function (then every call site of that
  function is resolved in turn), or a name unpacked from a `self.<attr>[...]` dict
  literal (the reconciler's `kinds` table). `patch(..., status=True)` is the `/status`
  subresource. A call that cannot be resolved is an error, not a silent gap.
* kopf's calls follow from the handlers the operator registers (read from the kopf
  registry `build_registry` returns) and from kopf 1.45's documented behaviour, cited
  per call below.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client as k8s

from pilotage.operator.kube import Res

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_DIR = ROOT / "pilotage" / "operator"
KUBE_VERBS = frozenset({"get", "list", "create", "patch", "delete"})

Call = tuple[str, str, str]
"""(API group, resource or resource/subresource, verb)."""


class UnresolvedCall(Exception):
    """A Kube call whose resource the scan cannot name."""


@dataclass
class _Function:
    module: str
    cls: str | None
    node: ast.FunctionDef | ast.AsyncFunctionDef

    @property
    def params(self) -> list[str]:
        return [a.arg for a in self.node.args.args]


@dataclass
class _Module:
    name: str
    tree: ast.Module
    constants: dict[str, Res]
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)


def _modules() -> dict[str, _Module]:
    out: dict[str, _Module] = {}
    for path in sorted(OPERATOR_DIR.glob("*.py")):
        name = f"pilotage.operator.{path.stem}"
        module = importlib.import_module(name)
        constants = {k: v for k, v in vars(module).items() if isinstance(v, Res)}
        tree = ast.parse(path.read_text(), filename=str(path))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        out[name] = _Module(name, tree, constants, classes)
    return out


def _functions(module: _Module) -> Iterator[_Function]:
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield _Function(module.name, None, node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield _Function(module.name, node.name, item)


def _kube_calls(fn: _Function) -> Iterator[ast.Call]:
    for node in ast.walk(fn.node):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in KUBE_VERBS
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "kube"
        ):
            yield node


def _where(fn: _Function, node: ast.AST) -> str:
    return f"{fn.module}:{getattr(node, 'lineno', '?')} ({fn.node.name})"


class _Scanner:
    def __init__(self) -> None:
        self.modules = _modules()
        self.functions = [f for m in self.modules.values() for f in _functions(m)]

    def _constant(self, fn: _Function, name: str) -> Res | None:
        return self.modules[fn.module].constants.get(name)

    def _dict_attr_values(self, fn: _Function, attr: str, position: int | None) -> list[Res]:
        """Each value of ``self.<attr> = {...}`` in fn's class (element ``position`` of tuples)."""
        if fn.cls is None:
            return []
        cls = self.modules[fn.module].classes[fn.cls]
        for node in ast.walk(cls):
            if not isinstance(node, ast.Assign | ast.AnnAssign):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == attr
                    and isinstance(node.value, ast.Dict)
                ):
                    found = []
                    for value in node.value.values:
                        if position is None:
                            element = value
                        elif isinstance(value, ast.Tuple):
                            element = value.elts[position]
                        else:
                            raise UnresolvedCall(f"self.{attr}: a value is not a tuple literal")
                        if not isinstance(element, ast.Name):
                            raise UnresolvedCall(f"self.{attr}: element {position} is not a name")
                        res = self._constant(fn, element.id)
                        if res is None:
                            raise UnresolvedCall(f"self.{attr}: {element.id} is not a Res")
                        found.append(res)
                    return found
        return []

    def _unpacked_from_attr(self, fn: _Function, name: str) -> list[Res] | None:
        """``name = self.<attr>[...]`` or ``a, b = self.<attr>[...]`` in fn: the dict's values."""
        for node in ast.walk(fn.node):
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript)):
                continue
            container = node.value.value
            if not (isinstance(container, ast.Attribute) and isinstance(container.value, ast.Name)):
                continue
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    return self._dict_attr_values(fn, container.attr, None)
                if isinstance(target, ast.Tuple):
                    for position, element in enumerate(target.elts):
                        if isinstance(element, ast.Name) and element.id == name:
                            return self._dict_attr_values(fn, container.attr, position)
        return None

    def _call_sites(self, callee: _Function) -> Iterator[tuple[_Function, ast.Call]]:
        for fn in self.functions:
            for node in ast.walk(fn.node):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == callee.node.name:
                    yield fn, node

    def resolve(self, fn: _Function, arg: ast.expr, depth: int = 0) -> list[Res]:
        if depth > 5:
            raise UnresolvedCall(f"{_where(fn, arg)}: resource passed through too many calls")
        if not isinstance(arg, ast.Name):
            raise UnresolvedCall(f"{_where(fn, arg)}: resource is not a plain name")
        res = self._constant(fn, arg.id)
        if res is not None:
            return [res]
        if arg.id in fn.params:
            index = fn.params.index(arg.id) - (1 if fn.cls else 0)
            found: list[Res] = []
            sites = list(self._call_sites(fn))
            if not sites:
                raise UnresolvedCall(f"{_where(fn, arg)}: {fn.node.name} is never called")
            for caller, site in sites:
                if index >= len(site.args):
                    raise UnresolvedCall(f"{_where(caller, site)}: resource not positional")
                found += self.resolve(caller, site.args[index], depth + 1)
            return found
        unpacked = self._unpacked_from_attr(fn, arg.id)
        if unpacked:
            return unpacked
        raise UnresolvedCall(f"{_where(fn, arg)}: cannot tell which resource {arg.id!r} is")

    def calls(self) -> set[Call]:
        found: set[Call] = set()
        for fn in self.functions:
            if fn.module == "pilotage.operator.kube":
                continue  # the client itself
            for node in _kube_calls(fn):
                verb = node.func.attr  # type: ignore[attr-defined]
                if not node.args:
                    raise UnresolvedCall(f"{_where(fn, node)}: Kube.{verb} without a resource")
                status = any(
                    kw.arg == "status"
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is True
                    for kw in node.keywords
                )
                for res in self.resolve(fn, node.args[0]):
                    found.add((res.group, res.plural + ("/status" if status else ""), verb))
        return found


def operator_calls() -> set[Call]:
    """Every (group, resource, verb) the operator's own code can call."""
    return _Scanner().calls()


@dataclass(frozen=True)
class KopfHandlers:
    changing: frozenset[tuple[str, str]]
    """(group, plural) with create/update/resume handlers (finalizers, annotations)."""
    daemons: frozenset[tuple[str, str]]
    watching: frozenset[tuple[str, str]]
    """(group, plural) with event handlers only (no finalizers, no annotations)."""


def kopf_handlers() -> KopfHandlers:
    from pilotage.operator.handlers import Scheduler, build_registry
    from pilotage.operator.kube import Kube
    from pilotage.operator.reconcile import Reconciler
    from pilotage.operator.settings import OperatorSettings

    settings = OperatorSettings()
    reconciler = Reconciler(Kube(k8s.ApiClient(k8s.Configuration())), settings)
    registry = build_registry(Scheduler(reconciler, settings))

    def selectors(handlers: object) -> frozenset[tuple[str, str]]:
        return frozenset(
            (h.selector.group or "", h.selector.any_name)
            for h in handlers.get_all_handlers()  # type: ignore[attr-defined]
            if h.selector is not None
        )

    return KopfHandlers(
        changing=selectors(registry._changing),
        daemons=selectors(registry._spawning),
        watching=selectors(registry._watching),
    )


@dataclass(frozen=True)
class KopfCalls:
    required: set[Call]
    optional_cluster_scoped: set[Call]
    """Cluster-scoped calls kopf makes in namespaced mode and does without when forbidden
    (it logs a warning and falls back), so a namespaced install need not grant them."""


def kopf_calls(handlers: KopfHandlers, clusterwide: bool, peering: bool) -> KopfCalls:
    required: set[Call] = set()
    optional: set[Call] = set()
    every = handlers.changing | handlers.daemons | handlers.watching
    for group, plural in every:
        # Each handled resource is listed, then watched (kopf._core.reactor.queueing).
        required |= {(group, plural, "list"), (group, plural, "watch")}
    for group, plural in handlers.changing | handlers.daemons:
        # Finalizers and the progress/diff-base annotations are merge patches of the object
        # (kopf._cogs.clients.patching; never /status: progress storage is annotations).
        required.add((group, plural, "patch"))
    # Handler failures are posted as core v1 Events (kopf._cogs.clients.events: POST only).
    required.add(("", "events", "create"))
    if peering:
        # Peering: watched (list + watch) and kept alive / cleaned with patches
        # (kopf._core.engines.peering); the cluster kind when cluster-wide.
        plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
        required |= {("kopf.dev", plural, v) for v in ("list", "watch", "patch")}
    crds = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
    namespaces = {("", "namespaces", v) for v in ("list", "watch")}
    # kopf._core.reactor.observation: CRDs are always watched (for resources appearing
    # later); namespaces only when not cluster-wide. Both fall back on 403.
    if clusterwide:
        required |= crds
    else:
        optional |= crds | namespaces
    return KopfCalls(required, optional)


CLUSTER_SCOPED = frozenset(
    {
        ("", "namespaces"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("kopf.dev", "clusterkopfpeerings"),
    }
)


def granted(rules: list[dict[str, list[str]]]) -> set[Call]:
    """Every (group, resource, verb) a list of PolicyRules allows (no wildcards expected)."""
    out: set[Call] = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out
