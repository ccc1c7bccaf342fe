"""Import contracts of DESIGN §1, checked statically over the source (lazy imports included).

* server and router never reach scikit-learn, skl2onnx, pandas or kopf, so the server
  image stays small;
* the operator never reaches onnxruntime or scikit-learn;
* the dashboard never reaches a model library (it reads statuses, model cards and counters;
  on a cluster it runs from the operator image, which has none);
* the control core does no I/O: none of its modules imports anything that talks to
  the outside world or reads the clock.
"""

from __future__ import annotations

import ast
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


@cache
def _direct_imports(module: str) -> frozenset[str]:
    path = _module_file(module)
    if path is None:
        return frozenset()
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
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
        for name in _direct_imports(current):
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
