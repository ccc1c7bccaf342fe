"""The Dockerfile, linted by hadolint and by the checks below. No Docker engine runs here,
so the images themselves are not built in tests (docs/operations.md says how)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chart.tools import ToolUnavailable, hadolint

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TARGETS = {"operator": "operator", "server": "server", "trainer": "trainer"}
RUN_UID = 10001


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def parse() -> tuple[dict[str, str], dict[str, Stage]]:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            current = Stage(name.strip(), base.strip())
            stages[current.name] = current
        elif current is None and keyword == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
        elif current is not None:
            current.instructions.append((keyword, rest))
    return global_args, stages


GLOBAL_ARGS, STAGES = parse()


def test_hadolint_is_clean() -> None:
    try:
        path = hadolint()
    except ToolUnavailable as exc:
        pytest.fail(str(exc))
    done = subprocess.run(
        [str(path), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_is_pinned_by_exact_tag_and_digest() -> None:
    image = GLOBAL_ARGS["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(3\.11\.\d+)-slim(-\w+)?@sha256:[0-9a-f]{64}", image)
    assert match, image
    assert "latest" not in DOCKERFILE.read_text()
    for stage in STAGES.values():
        assert stage.base in ("${PYTHON_IMAGE}", *STAGES), f"{stage.name}: FROM {stage.base}"


def test_the_three_targets_install_their_extra_only() -> None:
    for target, extra in TARGETS.items():
        stage = STAGES[target]
        runs = " ".join(rest for kw, rest in stage.instructions if kw == "RUN")
        installed = set(re.findall(r'"pilotage\[([a-z,]+)\]', runs))
        assert installed == {extra}, f"{target}: installs {installed}"
        assert f"from=wheels-{extra}," in runs
        assert "--no-index" in runs, "final stages install only the prebuilt wheels"
        builder = " ".join(rest for kw, rest in STAGES[f"wheels-{extra}"].instructions)
        assert f'".[{extra}]"' in builder


def test_final_stages_run_as_a_numeric_non_root_user_without_build_tools() -> None:
    for target in TARGETS:
        stage = STAGES[target]
        users = [rest for kw, rest in stage.instructions if kw == "USER"]
        assert users and users[-1] == f"{RUN_UID}:{RUN_UID}", f"{target}: USER {users}"
        keywords = {kw for kw, _ in stage.instructions}
        assert "COPY" not in keywords and "ADD" not in keywords, f"{target}: copies files"
        for kw, rest in [*stage.instructions, *STAGES["runtime"].instructions]:
            if kw == "RUN":
                assert not re.search(r"apt-get|apk |gcc|build-essential|make ", rest), rest
        assert "pip uninstall --yes pip setuptools wheel" in " ".join(
            rest for _, rest in stage.instructions
        )
    runtime = " ".join(rest for _, rest in STAGES["runtime"].instructions)
    assert f"--uid {RUN_UID}" in runtime and "HOME=/tmp" in runtime


def test_no_add_of_urls_and_apt_lists_cleaned() -> None:
    for stage in STAGES.values():
        for kw, rest in stage.instructions:
            assert not (kw == "ADD" and re.search(r"https?://", rest)), rest
            if kw == "RUN" and "apt-get install" in rest:
                assert "rm -rf /var/lib/apt/lists" in rest, rest


def test_versions_and_uid_agree_with_the_project() -> None:
    from pilotage.operator import build

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert GLOBAL_ARGS["PILOTAGE_VERSION"] == project["version"]
    assert build.RUN_UID == RUN_UID
    helpers = (ROOT / "charts/pilotage/templates/_helpers.tpl").read_text()
    assert f"runAsUser: {RUN_UID}" in helpers


def test_server_image_has_no_scikit_learn_and_operator_no_onnxruntime() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    def names(extra: str) -> set[str]:
        return {re.split(r"[<>=!;\[ ]", req, maxsplit=1)[0].lower() for req in extras[extra]}

    assert not names("server") & {"scikit-learn", "skl2onnx", "pandas", "kopf"}
    assert not names("operator") & {"onnxruntime", "scikit-learn"}


def test_build_context_is_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "pilotage"}
    copied = {
        source
        for kw, rest in STAGES["source"].instructions
        if kw == "COPY"
        for source in rest.split()[:-1]
    }
    assert copied == allowed
