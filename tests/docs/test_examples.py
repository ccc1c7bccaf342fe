"""Every fenced code block of README.md and docs/*.md is run or checked, so that an example
that goes stale fails here. How each kind of block is checked:

* YAML: a Pilotage resource is parsed by the models and admitted by its generated CRD
  (schema + CEL); a routing file is parsed by the router; a core Kubernetes object is
  validated against the 1.30 schema.
* JSON: annotated `shape SOURCE`; the same request is made to a real server or router
  (or the same command run) and the answer must have the documented keys and types.
* Shell (`sh`, `console`, no language): every command's program, subcommand, options
  and files must exist; offline `pilotage` commands run in a sandbox, `curl` commands
  against the live server and router, and documented output is compared.
* Python: run, against the live server where it talks to one.
* Lua: must be one of the chart's Argo CD health scripts (tests/chart runs them).
* Anything else must be annotated `skip (reason)`; an unknown block fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pilotage.api import parse_resource
from pilotage.api.modelcard import ModelCard
from pilotage.wire.routes import parse_table
from tests.api.files import load_crds
from tests.api.kube import admit
from tests.chart import test_docs as chart_docs
from tests.docs.blocks import DOCS_DIR, ROOT, Block, all_blocks, extract
from tests.docs.commands import Command, json_output, parse, static_problems
from tests.docs.inferencelog import sample as inference_log_sample
from tests.docs.live import FAULTS_FLAG, TOKEN, Live, http, live_processes
from tests.docs.shapes import mismatches

pytestmark = pytest.mark.xdist_group("docs")

BLOCKS = all_blocks()
CRDS = load_crds()
K8S_VERSION = "1.30"
# `pilotage` subcommands that run offline in a sandbox; `up -f X` is run as `apply -f X`
# (up then reconciles in the foreground: tests/local runs it), the others are only checked.
RUNNABLE = {"apply", "get", "describe", "delete", "promote", "abort", "retry", "crds"}
RUNNABLE |= {"profile", "train", "up"}
SANDBOX_LINKS = ("examples", "charts", "deploy", "docs", "benchmarks", "Makefile", "Dockerfile")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_processes(tmp_path_factory.mktemp("docs-live")) as processes:
        yield processes


def make_sandbox(where: Path) -> Path:
    """A working directory like the repository root, with its own state and crds/."""
    for name in SANDBOX_LINKS:
        (where / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "crds", where / "crds")
    return where


def run_pilotage(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PILOTAGE_STATE_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "pilotage", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


# --- YAML ----------------------------------------------------------------------------


def check_yaml(block: Block, request: pytest.FixtureRequest) -> None:
    for doc in yaml.safe_load_all(block.text):
        if not isinstance(doc, dict):
            pytest.fail(f"{block.id}: a YAML example that is not an object")
        api_version = str(doc.get("apiVersion", ""))
        if api_version.startswith("pilotage.dev/"):
            parse_resource(doc, block.id)
            _, errors = admit(doc, CRDS[doc["kind"]])
            assert errors == [], f"{block.id}: the CRD rejects the example: {errors}"
        elif "variants" in doc and "deployment" in doc:
            parse_table(doc)
        elif api_version and "kind" in doc:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        else:
            pytest.fail(f"{block.id}: YAML that is neither a resource nor a routing file")


# --- JSON shapes -----------------------------------------------------------------------


def drift_namespace(live: Live) -> dict[str, Any]:
    before, after = live.drift_before, live.drift_after
    counts = after["predictions"]["counts"]
    card = ModelCard.from_json(
        (Path(live.model_uri.removeprefix("file://")) / "model.json").read_text()
    )
    return {
        "before": before,
        "after": after,
        "card": card,
        "predictions": {
            k: v - before["predictions"]["counts"].get(k, 0) for k, v in counts.items()
        },
    }


def source_value(source: str, request: pytest.FixtureRequest) -> Any:
    kind, _, rest = source.partition(" ")
    if kind in ("server", "router", "router-admin"):
        live: Live = request.getfixturevalue("live")
        method, path = rest.split()
        base = {"server": live.server_url, "router": live.router_url}.get(kind, live.admin_url)
        headers = {"Authorization": f"Bearer {TOKEN}"} if kind == "router-admin" else {}
        return http(method, base + path, headers=headers)
    if kind == "stdout":
        words = rest.split()
        assert words[0] == "pilotage", source
        sandbox = make_sandbox(request.getfixturevalue("tmp_path"))
        done = run_pilotage(words[1:], sandbox)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])
    if kind == "inference-log":
        return inference_log_sample(rest)
    if kind == "drift-report":
        python = next(b for b in extract(DOCS_DIR / "drift.md") if b.lang == "python")
        namespace = run_python(python, request)
        return namespace["report"].to_dict()
    raise AssertionError(f"unknown shape source {source!r}")


def check_shape(block: Block, request: pytest.FixtureRequest) -> None:
    spec = block.annotation.removeprefix("shape ").strip()
    source, _, keys = spec.partition(" any-keys ")
    any_keys = {tuple(p.split(".")) for p in keys.split(",") if p}
    documented = json.loads(block.text)
    problems = mismatches(documented, source_value(source, request), any_keys)
    assert problems == [], f"{block.id}: the real answer departs from the doc: {problems}"


def check_request(block: Block, request: pytest.FixtureRequest) -> None:
    live: Live = request.getfixturevalue("live")
    target = block.annotation.removeprefix("request ").strip()
    first, _, body = block.text.partition("\n")
    method, path = first.split()
    base = {"server": live.server_url, "router": live.router_url}[target]
    answer = http(method, base + path, json.loads(body))
    assert isinstance(answer, dict) and "error" not in answer, answer


# --- Python, Lua ---------------------------------------------------------------------


def run_python(block: Block, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Run a Python example; the names it takes as given are provided (iris resources
    from examples/quickstart.yaml, the live model's card and drift counters)."""
    text = block.text
    resources = {r.kind: r for r in load_quickstart()}
    namespace: dict[str, Any] = {
        "__name__": "doc_example",
        "dataset": resources["Dataset"],
        "training_job": resources["TrainingJob"],
    }
    if "localhost:8080" in text or "card." in text:
        live: Live = request.getfixturevalue("live")
        namespace.update(drift_namespace(live))
        text = live.substitute(text)
    tmp: Path = request.getfixturevalue("tmp_path")
    text = text.replace("file:///tmp/", f"{tmp.as_uri()}/")
    exec(compile(text, block.id, "exec"), namespace)  # the doc's own example
    return namespace


def load_quickstart() -> list[Any]:
    docs = yaml.safe_load_all((ROOT / "examples" / "quickstart.yaml").read_text())
    return [parse_resource(d) for d in docs if d]


def check_python(block: Block, request: pytest.FixtureRequest) -> None:
    run_python(block, request)


def check_lua(block: Block, request: pytest.FixtureRequest) -> None:
    scripts = [p.read_text() for p in (ROOT / "charts/pilotage/health").glob("*/*/health.lua")]
    assert block.text in scripts, f"{block.id}: not one of the chart's health scripts"


# --- shell -----------------------------------------------------------------------------


def chart_covered(block: Block, command: Command) -> bool:
    """helm/kubectl commands of the docs tests/chart/test_docs.py reads."""
    if block.doc not in chart_docs.DOCS or command.program not in ("helm", "kubectl"):
        return False
    return command.words in chart_docs.commands(block.doc)


def check_commands(block: Block, request: pytest.FixtureRequest) -> None:
    commands = parse(block)
    assert commands, f"{block.id}: a shell block without a command"
    problems = []
    for command in commands:
        found = static_problems(command)
        if found is None and not chart_covered(block, command):
            pytest.fail(f"{block.id}: no check knows `{command.text}`")
        problems += [f"`{command.text}`: {p}" for p in found or []]
    assert problems == [], f"{block.id}: {problems}"
    sandbox: Path | None = None
    for command in commands:
        if command.program == "curl":
            run_curl(block, command, request.getfixturevalue("live"))
        elif command.program == "pilotage" and command.words[1] == "serve" and command.output:
            compare_serve_output(command, request.getfixturevalue("live"))
        elif runnable(command):
            if sandbox is None:
                sandbox = make_sandbox(request.getfixturevalue("tmp_path"))
            run_in_sandbox(command, sandbox)


def runnable(command: Command) -> bool:
    if command.program != "pilotage" or command.words[1] not in RUNNABLE:
        return False
    if command.has_placeholder or "--kube" in command.words:
        return False
    return command.words[1] != "up" or "-f" in command.words


def run_in_sandbox(command: Command, sandbox: Path) -> None:
    args = command.words[1:]
    if args[0] == "up":
        args = ["apply", *args[1:]]
    done = run_pilotage(args, sandbox)
    assert done.returncode == 0, f"`{command.text}` exited {done.returncode}: {done.stderr}"
    if args[0] == "crds":
        for path in (ROOT / "crds").glob("*.yaml"):
            assert (sandbox / "crds" / path.name).read_text() == path.read_text(), (
                f"`{command.text}` changed {path.name}: crds/ is stale"
            )


def run_curl(block: Block, command: Command, live: Live) -> None:
    args = [live.substitute(w) for w in command.words[1:]]
    done = subprocess.run(
        ["curl", "--fail-with-body", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"`{command.text}`: curl {done.returncode}: {done.stdout}"
    answer = json.loads(done.stdout)
    documented = json_output(command)
    if documented is not None:
        problems = mismatches(documented, answer, set())
        assert problems == [], f"{block.id}: `{command.text}` answers {answer}: {problems}"


def compare_serve_output(command: Command, live: Live) -> None:
    """The documented start-up lines, in order, in the log of the live server started
    with the same arguments (plus FAULTS_FLAG, whose warning line may come between)."""
    documented_argv = live.substitute(" ".join(command.words[1:]))
    actual_argv = " ".join(a for a in live.server.args[3:] if a != FAULTS_FLAG)
    assert documented_argv == actual_argv, (documented_argv, actual_argv)
    log = iter(live.server.log().splitlines())
    for line in command.output:
        expected = live.substitute(line)
        assert any(seen == expected for seen in log), f"no line {expected!r} in the log"


# --- dispatch ----------------------------------------------------------------------------

Checker = Callable[[Block, pytest.FixtureRequest], None]
BY_LANGUAGE: dict[str, Checker] = {
    "yaml": check_yaml,
    "python": check_python,
    "lua": check_lua,
    "sh": check_commands,
    "console": check_commands,
    "": check_commands,
}


def checker_for(block: Block) -> Checker:
    if block.annotation.startswith("shape "):
        return check_shape
    if block.annotation.startswith("request "):
        return check_request
    if block.annotation:
        pytest.fail(f"{block.id}: unknown annotation {block.annotation!r}")
    if block.lang not in BY_LANGUAGE:
        pytest.fail(f"{block.id}: no check for a {block.lang or 'plain'} block; annotate it")
    return BY_LANGUAGE[block.lang]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_example(block: Block, request: pytest.FixtureRequest) -> None:
    if block.annotation.startswith("skip"):
        reason = block.annotation.removeprefix("skip").strip()
        assert reason.startswith("(") and reason.endswith(")"), f"{block.id}: skip needs a (reason)"
        pytest.skip(f"{block.id}: {reason[1:-1]}")
    checker_for(block)(block, request)
