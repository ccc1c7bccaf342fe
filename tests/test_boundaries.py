"""Import contracts of DESIGN §1, checked statically over the source (lazy imports included).

* server and router never reach scikit-learn, skl2onnx, pandas or kopf, so the server
  image stays small;
* the operator never reaches onnxruntime or scikit-learn;
* the dashboard never reaches a model library (it reads statuses, model cards and counters;
  on a cluster it runs from the operator image, which has none);
* the control core does no I/O: none of its modules imports anything that talks to
  the outside world or reads the clock;
* data sources (pilotage.sources) are consulted by the API, the control core and the
  operator, but read by the trainer: their modules import the reading libraries (pandas,
  scikit-learn, boto3...) only inside the functions that read, so the closures below follow
  only what a source module imports when it is imported;
* only pilotage.sources tells data source schemes apart: nothing else tests a URI against
  one (`uri.startswith("builtin://")`, `parsed.scheme == "s3"`), so a new source is one
  module there;
* wire contracts (issue 13): each document between processes is defined once, in
  pilotage/wire (plain data, no pydantic), the router's admin API has one client, the
  router never loads the resource models, and the embedded shell (pilotage.local) never
  imports the operator and has no import cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pilotage"

HEAVY_FOR_DATA_PLANE = {"sklearn", "skl2onnx", "pandas", "kopf", "kubernetes", "scipy"}
HEAVY_FOR_OPERATOR = {"onnxruntime", "sklearn", "skl2onnx"}
HEAVY_FOR_DASHBOARD = {"onnxruntime", "sklearn", "skl2onnx", "pandas", "scipy"}
IO_MODULES = {
    "os", "io", "socket", "ssl", "subprocess", "urllib", "http", "httpx", "aiohttp",
    "requests", "sqlite3", "time", "random", "threading", "asyncio", "pathlib", "shutil",
    "tempfile", "kopf", "kubernetes", "onnxruntime", "sklearn", "boto3", "uvicorn",
    "pilotage.storage", "pilotage.local", "pilotage.operator", "pilotage.server",
    "pilotage.router", "pilotage.trainer",
}  # fmt: skip


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "pilotage":
        return None
    base = ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


READ_LATE = "pilotage.sources"  # its modules' function-level imports run only when reading
READING_LIBRARIES = {"pandas", "numpy", "sklearn", "pyarrow", "boto3", "botocore", "scipy"}


def _import_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """The nodes that run when a module is imported: not function bodies, not the imports
    under `if TYPE_CHECKING:`."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return out


@cache
def _direct_imports(module: str, import_time_only: bool = False) -> frozenset[str]:
    path = _module_file(module)
    if path is None:
        return frozenset()
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in _import_time_nodes(tree) if import_time_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return frozenset(n for n in names if n.split(".")[0] != "pilotage" or _module_file(n))


def _closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        late = current == READ_LATE or current.startswith(READ_LATE + ".")
        for name in _direct_imports(current, import_time_only=late):
            # importing pilotage.a.b also runs pilotage.a's __init__
            parts = name.split(".")
            todo.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return seen


def _modules(package: str) -> list[str]:
    pkg_dir = ROOT / package
    return sorted(
        "pilotage." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in pkg_dir.rglob("*.py")
    )


def _offenders(modules: list[str], forbidden: set[str], transitive: bool) -> list[str]:
    out = []
    for module in modules:
        reached = _closure(module) if transitive else set(_direct_imports(module))
        for name in sorted(reached):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{module} -> {name}")
    return out


@pytest.mark.parametrize("package", ["server", "router", "inferencelog"])
def test_data_plane_stays_light(package: str) -> None:
    assert _offenders(_modules(package), HEAVY_FOR_DATA_PLANE, transitive=True) == []


def test_operator_never_loads_models() -> None:
    assert _offenders(_modules("operator"), HEAVY_FOR_OPERATOR, transitive=True) == []


def test_dashboard_stays_light() -> None:
    assert _modules("dashboard")
    assert _offenders(_modules("dashboard"), HEAVY_FOR_DASHBOARD, transitive=True) == []


def test_control_core_does_no_io() -> None:
    assert _offenders(_modules("control"), IO_MODULES, transitive=False) == []


def test_checker_sees_lazy_and_transitive_imports() -> None:
    # storage imports boto3 inside a function; api.manifests reaches yaml through a sibling
    assert _offenders(["pilotage.storage"], {"boto3"}, transitive=False) == [
        "pilotage.storage -> boto3"
    ]
    assert "pilotage.api -> yaml" in _offenders(["pilotage.api"], {"yaml"}, transitive=True)


BINNING = "pilotage.drift.baseline"
BINNING_CALLS = {"quantile", "bincount", "digitize"}  # (a residual histogram is no drift bin)


def _binning_calls(module: str) -> set[str]:
    path = _module_file(module)
    assert path is not None
    return {
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in BINNING_CALLS
    }


def test_one_binning_implementation() -> None:
    # Profiles (quantile edges), the bin of a value and counting into bins live in one
    # module: the trainer writes the model card's bins with it, the server counts with it.
    binning = {m for m in _modules("") if _binning_calls(m)}
    assert binning == {BINNING}
    assert BINNING in _direct_imports("pilotage.trainer.run")
    assert BINNING in _direct_imports("pilotage.trainer.streaming")
    assert BINNING in _direct_imports("pilotage.server.drift")
    assert BINNING in _direct_imports("pilotage.drift.samples")


def test_sources_import_reading_libraries_only_to_read() -> None:
    modules = _modules("sources")
    assert {"pilotage.sources.builtin", "pilotage.sources.s3"} <= set(modules)
    offenders = [
        f"{module} -> {name}"
        for module in modules
        for name in sorted(_direct_imports(module, import_time_only=True))
        if name.split(".")[0] in READING_LIBRARIES
    ]
    assert offenders == []
    # and the whole-module view still sees them (they are there, inside functions)
    assert "pilotage.sources.builtin -> sklearn" in _offenders(
        ["pilotage.sources.builtin"], {"sklearn"}, transitive=False
    )


def _scheme_tests(path: Path, schemes: set[str], text: str | None = None) -> list[str]:
    """Where a module tests a URI against one of ``schemes``: `x.startswith("s3://")` (or a
    tuple of such prefixes) and `x.scheme == "s3"` / `x.scheme in (...)`."""

    def constants(node: ast.AST) -> list[str]:
        items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
        return [c.value for c in items if isinstance(c, ast.Constant) and isinstance(c.value, str)]

    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        tested: list[str] = []
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "startswith"
            and node.args
        ):
            tested = [c.partition("://")[0] for c in constants(node.args[0]) if "://" in c]
        elif isinstance(node, ast.Compare) and any(
            isinstance(side, ast.Attribute) and side.attr == "scheme"
            for side in [node.left, *node.comparators]
        ):
            tested = [c for side in [node.left, *node.comparators] for c in constants(side)]
        found += [
            f"{path.relative_to(ROOT.parent) if path.is_absolute() else path}:{node.lineno} {s}"
            for s in tested
            if s in schemes
        ]
    return found


# Artifact stores (models, profiles), upstream URLs and log sinks are not data sources.
SCHEME_OWNERS_BESIDES_SOURCES = {
    "storage.py": "reads and writes artifact URIs (file, pvc, s3, https)",
    "operator/settings.py": "the artifact store must be one that pods reach (pvc or s3)",
    "wire/routes.py": "an upstream is an http:// URL",
    "inferencelog/": "inference-log sinks (file, s3, http) are where logs are written",
}


def test_only_sources_tell_data_source_schemes_apart() -> None:
    from pilotage import sources

    schemes = set(sources.schemes())
    assert {"builtin", "s3", "pvc"} <= schemes
    offenders = [
        hit
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).parts[0] != "sources"
        and not str(path.relative_to(ROOT)).startswith(tuple(SCHEME_OWNERS_BESIDES_SOURCES))
        for hit in _scheme_tests(path, schemes)
    ]
    assert offenders == []
    # the check sees what it is meant to catch
    caught = "u.startswith('builtin://')\nurlparse(u).scheme in ('pvc', 'x')\np.scheme == 's3'\n"
    assert _scheme_tests(Path("x.py"), schemes, caught) == [
        "x.py:1 builtin",
        "x.py:2 pvc",
        "x.py:3 s3",
    ]


# ---------------------------------------------------------------------------
# Wire contracts (issue 13): each document between processes has one definition, in
# pilotage/wire, that every side imports; the router's admin API has one client.
# ---------------------------------------------------------------------------

WIRE_DOCUMENT_KEYS = {
    # routing document (wire/routes.py); the stats echo stickyHeader (wire/router_stats.py)
    "stickyHeader": {"wire/routes.py", "wire/router_stats.py"},
    "maxHeld": {"wire/routes.py"},
    # router stats document (wire/router_stats.py)
    "reloadErrors": {"wire/router_stats.py"},
    "lastReloadError": {"wire/router_stats.py"},
    "retriedOnStable": {"wire/router_stats.py"},
    "incompleteBodies": {"wire/router_stats.py"},
    "busySeconds": {"wire/router_stats.py"},
    "inferenceLog": {"wire/router_stats.py"},
}
ADMIN_PATHS = ("/admin/routes", "/admin/stats", "/admin/activations")
ADMIN_API_SIDES = {"wire/admin.py", "router/app.py"}  # the one client, the server


def _string_constants(path: Path) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _spellings(check: dict[str, set[str]] | None = None) -> list[str]:
    """Where a wire document's field name is spelled outside the modules that define it."""
    check = WIRE_DOCUMENT_KEYS if check is None else check
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for line, value in _string_constants(path):
            if value in check and where not in check[value]:
                found.append(f"{where}:{line} {value}")
    return found


def test_one_definition_per_wire_document() -> None:
    assert _spellings() == []
    # the check sees a document produced elsewhere
    assert _spellings({"deployment": {"wire/routes.py"}})


def test_one_router_admin_client() -> None:
    offenders = [
        f"{where}:{line} {value}"
        for path in sorted(ROOT.rglob("*.py"))
        if (where := str(path.relative_to(ROOT))) not in ADMIN_API_SIDES
        for line, value in _string_constants(path)
        if value.startswith(ADMIN_PATHS)
    ]
    assert offenders == []


def test_wire_documents_are_plain_data() -> None:
    """No pydantic, no resource models, no control plane, no I/O (URL parsing aside)."""
    documents = [m for m in _modules("wire") if m != "pilotage.wire.admin"]
    forbidden = (IO_MODULES - {"urllib"}) | {
        "urllib.request",
        "urllib.error",
        "pydantic",
        "pilotage.api",
        "pilotage.control",
    }
    assert _offenders(documents, forbidden, transitive=False) == []
    assert _offenders(_modules("wire"), {"pydantic", "pilotage.api"}, transitive=True) == []


def test_router_never_loads_the_resource_models() -> None:
    # the routing document and bounded YAML come from wire/ and safeyaml, not pilotage.api
    assert _offenders(_modules("router"), {"pydantic", "pilotage.api"}, transitive=True) == []


def test_model_server_does_not_build_the_resource_models_at_start() -> None:
    """A server reads only its model card: loading the four resources' pydantic models
    would add 0.2 s to every cold start (pilotage.api loads its names on first use)."""
    code = (
        "import sys, pilotage.server.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('pilotage.api')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "['pilotage.api', 'pilotage.api.modelcard']"


def test_local_never_imports_operator() -> None:
    """The embedded shell reaches a cluster (`--kube`) through pilotage.kubeconnection."""
    assert _modules("local")
    assert _offenders(_modules("local"), {"pilotage.operator"}, transitive=True) == []


def _cycles(
    modules: list[str], imports: Callable[[str], frozenset[str]] = _direct_imports
) -> list[list[str]]:
    """Import cycles among ``modules`` (lazy imports included), each from its least name."""
    inside = set(modules)
    graph = {m: sorted(n for n in imports(m) if n in inside and n != m) for m in modules}
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for nxt in graph[path[-1]]:
            if nxt == path[0]:
                found.add(tuple(path))
            elif nxt not in path and nxt > path[0]:
                walk([*path, nxt])

    for start in modules:
        walk([start])
    return [list(c) for c in sorted(found)]


def test_local_has_no_import_cycle() -> None:
    assert _cycles(_modules("local")) == []
    # the check sees a cycle
    fake = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    assert _cycles(["a", "b", "c", "d"], lambda m: fake[m]) == [["a", "b", "c"]]
