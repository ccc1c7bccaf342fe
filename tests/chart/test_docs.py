"""The install, upgrade and uninstall commands of docs/operations.md: every `helm` and
`kubectl` command refers to files and values that exist, and every `helm install`,
`upgrade` and `template` renders when run as `helm template` with the same arguments."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import CHART, helm

pytestmark = pytest.mark.xdist_group("chart")

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "operations.md", ROOT / "docs" / "argocd.md"]
FILE_FLAGS = {"-f", "--values", "--patch-file", "--filename"}
DROPPED_HELM_FLAGS = {"--create-namespace", "--reuse-values", "--wait", "--atomic", "--install"}
PATH_PREFIXES = ("charts/", "deploy/", "examples/", "crds/")


def commands(doc: Path) -> list[list[str]]:
    """helm/kubectl commands in the ```sh blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("helm", "kubectl"):
                out.append(words)
    return out


def operations_commands() -> list[list[str]]:
    return commands(DOCS[0])


def values_has(key: str) -> bool:
    node: Any = yaml.safe_load((CHART / "values.yaml").read_text())
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
        if isinstance(node, dict) and not node and i < len(parts) - 1:
            return True  # a free-form map such as labels: {}
    return True


def test_docs_show_install_upgrade_uninstall_as_commands() -> None:
    lines = [" ".join(c[:2]) for c in operations_commands()]
    for needed in ("helm install", "helm upgrade", "helm uninstall", "kubectl apply"):
        assert needed in lines, needed


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_referenced_file_exists(doc: Path) -> None:
    for words in commands(doc):
        for i, word in enumerate(words):
            if words[i - 1] in FILE_FLAGS or word.startswith(PATH_PREFIXES):
                assert (ROOT / word).exists(), f"{' '.join(words)}: no {word}"
    for mentioned in re.findall(r"`((?:deploy|charts|examples)/[^`\s]+)`", doc.read_text()):
        if "*" not in mentioned and "<" not in mentioned:
            assert (ROOT / mentioned).exists(), mentioned


def test_every_set_value_exists_in_values_yaml() -> None:
    for words in operations_commands():
        for i, word in enumerate(words):
            if words[i - 1] == "--set":
                key = word.split("=", 1)[0]
                assert values_has(key), f"{' '.join(words)}: no value {key}"


HELM_RENDERABLE = [
    w
    for w in operations_commands()
    if w[:2] in (["helm", "install"], ["helm", "upgrade"], ["helm", "template"])
]


@pytest.mark.parametrize("words", HELM_RENDERABLE, ids=lambda w: " ".join(w[1:4]))
def test_helm_commands_render(words: list[str]) -> None:
    args = [w for w in words[2:] if w not in DROPPED_HELM_FLAGS]
    done = helm("template", *args, check=False)
    assert done.returncode == 0, done.stderr
    assert "kind: Deployment" in done.stdout


def test_uninstall_names_the_installed_release() -> None:
    installed = {w[2] for w in operations_commands() if w[:2] == ["helm", "install"]}
    removed = {w[2] for w in operations_commands() if w[:2] == ["helm", "uninstall"]}
    assert removed and removed <= installed
