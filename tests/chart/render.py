"""Render the chart with the real `helm` binary and parse what it prints."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.chart.tools import binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pilotage"
VALUES_DIR = ROOT / "deploy" / "values"
RELEASE = "pilotage"
NAMESPACE = "pilotage-system"

Obj = dict[str, Any]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(binary("helm")), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stderr}")
    return done


@functools.cache
def _template(args: tuple[str, ...]) -> str:
    return helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args).stdout


def render(*args: str) -> list[Obj]:
    """Objects `helm template` prints for these extra arguments (`-f`, `--set`...)."""
    return [doc for doc in yaml.safe_load_all(_template(tuple(args))) if doc]


def variant_files() -> list[Path]:
    """The documented value variants (deploy/values/*.yaml)."""
    return sorted(VALUES_DIR.glob("*.yaml"))


def variants() -> dict[str, tuple[str, ...]]:
    """Name → helm arguments: the defaults and each documented variant."""
    out: dict[str, tuple[str, ...]] = {"default": ()}
    for path in variant_files():
        out[path.stem] = ("-f", str(path))
    return out


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]
