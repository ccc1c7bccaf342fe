"""Shell blocks split into commands, and the static checks every command gets.

A block is a list of commands, one a line (a line ending in `\\`, or with a quote left
open, continues on the next). In a `console` block commands start with `$ ` and the
lines under a command are its documented output. `for VAR in a b c; do … done` repeats
the commands between once per value, with `$VAR` / `"$VAR"` replaced.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilotage.cli import COMMANDS
from tests.docs.blocks import ROOT, Block

REPO_PATH_PREFIXES = ("examples/", "charts/", "deploy/", "crds/", "docs/", "benchmarks/")
# Words that stand for a value the reader fills in.
PLACEHOLDER = re.compile(r"[\[\]…]|\.\.\.|^[A-Z][A-Z_]{2,}$|PORT|/PATH/")


@dataclass
class Command:
    words: list[str]
    text: str
    output: list[str] = field(default_factory=list)

    @property
    def program(self) -> str:
        return Path(self.words[0]).name if self.words else ""

    @property
    def has_placeholder(self) -> bool:
        return any(PLACEHOLDER.search(w) for w in self.words)


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # a quote left open
        return False
    return True


def parse(block: Block) -> list[Command]:
    console = block.lang == "console"
    commands: list[Command] = []
    pending = ""
    for raw in block.text.splitlines():
        if pending:
            pending += "\n" + raw
        elif console and not raw.startswith("$ "):
            if raw.strip() and commands:
                commands[-1].output.append(raw)
            continue
        elif not raw.strip():
            continue
        else:
            pending = raw[2:] if console else raw
        if _complete(pending):
            words = shlex.split(pending.replace("\\\n", " "), comments=True)
            if words:
                commands.append(Command(words, pending))
            pending = ""
    if pending:
        raise ValueError(f"{block.id}: unterminated command {pending!r}")
    return _expand_loops(commands)


def _expand_loops(commands: list[Command]) -> list[Command]:
    out: list[Command] = []
    i = 0
    while i < len(commands):
        words = commands[i].words
        if words[0] == "for" and len(words) >= 4 and words[2] == "in":
            var, values = words[1], [w.rstrip(";") for w in words[3:] if w not in ("do", ";")]
            end = next(j for j in range(i + 1, len(commands)) if commands[j].words == ["done"])
            for value in values:
                for body in commands[i + 1 : end]:
                    replaced = [w.replace(f"${var}", value) for w in body.words]
                    out.append(Command(replaced, body.text, body.output))
            i = end + 1
        else:
            out.append(commands[i])
            i += 1
    return out


# --- pilotage -----------------------------------------------------------------------


@functools.cache
def help_text(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, f"{' '.join(argv)} --help failed: {done.stderr[-2000:]}"
    return done.stdout


def flags(words: list[str]) -> list[str]:
    out = []
    for word in words:
        word = word.strip("[]")
        if word.startswith("-") and word != "-":
            out.append(word.split("=", 1)[0])
    return out


def repo_paths(words: list[str]) -> list[str]:
    return [
        w.strip("[]")
        for w in words
        if w.startswith(REPO_PATH_PREFIXES) and not PLACEHOLDER.search(w.strip("[]"))
    ]


def pilotage_problems(command: Command) -> list[str]:
    """The subcommand exists, each option is in its --help, each repo path exists."""
    if len(command.words) < 2:
        return ["`pilotage` without a subcommand"]
    sub = command.words[1]
    if sub not in COMMANDS:
        return [f"pilotage has no subcommand {sub!r} (pilotage/cli.py COMMANDS)"]
    usage = help_text("-m", "pilotage", sub)
    out = [
        f"`pilotage {sub} --help` has no option {f}"
        for f in flags(command.words[2:])
        if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", usage)
    ]
    out += [f"no file {p}" for p in repo_paths(command.words) if not (ROOT / p).exists()]
    return out


def python_module_problems(command: Command) -> list[str]:
    """`python -m MODULE ARGS`: the module exists and takes these options."""
    module = command.words[command.words.index("-m") + 1]
    if importlib.util.find_spec(module) is None:
        return [f"no module {module}"]
    args = command.words[command.words.index("-m") + 2 :]
    usage = help_text("-m", module)
    out = [f"`{module} --help` has no option {f}" for f in flags(args) if f not in usage]
    out += [f"no file {p}" for p in repo_paths(args) if not (ROOT / p).exists()]
    return out


# --- kubectl, docker, make ----------------------------------------------------------

KUBECTL_VALUE_FLAGS = {"-n", "--namespace", "-o", "--output", "--timeout", "-l", "--selector"}
KUBECTL_VALUE_FLAGS |= {"--context", "--from-literal", "--for", "-f", "--filename"}
CORE_RESOURCES = {"namespace", "namespaces", "ns", "crd", "crds", "deployment", "deployments"}
CORE_RESOURCES |= {"pvc", "secret", "configmap", "configmaps", "pods", "pod", "jobs", "events"}


@functools.cache
def pilotage_resource_names() -> frozenset[str]:
    names: set[str] = set()
    for path in (ROOT / "crds").glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())["spec"]["names"]
        names |= {spec["plural"], spec["singular"], spec["kind"].lower()}
        names |= set(spec.get("shortNames", [])) | set(spec.get("categories", []))
    return frozenset(names)


@functools.cache
def pilotage_source() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "pilotage").rglob("*.py"))


def kubectl_problems(command: Command) -> list[str]:
    words = command.words[1:]
    positional: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in KUBECTL_VALUE_FLAGS:
            if word in ("-f", "--filename"):
                out += [f"no file {words[i + 1]}"] if not (ROOT / words[i + 1]).exists() else []
            i += 2
            continue
        if not word.startswith("-"):
            positional.append(word)
        i += 1
    verb = positional[0] if positional else ""
    if verb in ("get", "describe", "annotate", "delete", "wait", "label") and len(positional) > 1:
        known = pilotage_resource_names() | CORE_RESOURCES
        for kind in positional[1].split("/", 1)[0].split(","):
            if kind not in known:
                out.append(f"unknown resource type {kind!r}")
    if verb == "annotate":
        for pair in positional[3:]:
            key = pair.split("=", 1)[0]
            if key.startswith("pilotage.dev/") and f'"{key}"' not in pilotage_source():
                out.append(f"no code reads the annotation {key}")
    if verb == "rollout" and "deployment/pilotage-operator" not in positional:
        out.append("kubectl rollout: only deployment/pilotage-operator is documented")
    return out


@functools.cache
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def docker_problems(command: Command) -> list[str]:
    out = []
    words = command.words
    for i, word in enumerate(words[:-1]):
        if word == "--target" and not re.search(
            rf"^FROM .* AS {words[i + 1]}$", dockerfile(), re.M
        ):
            out.append(f"the Dockerfile has no stage {words[i + 1]!r}")
        if word == "--build-arg":
            name = words[i + 1].split("=", 1)[0]
            if not re.search(rf"^ARG {name}\b", dockerfile(), re.M):
                out.append(f"the Dockerfile has no ARG {name}")
    if words[-1] != "." or not (ROOT / "Dockerfile").exists():
        out.append("docker build must run from the repository root (`.`)")
    return out


def make_problems(command: Command) -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return [
        f"the Makefile has no target {t!r}"
        for t in command.words[1:]
        if not re.search(rf"^{re.escape(t)}:", makefile, re.M)
    ]


def shell_plumbing(command: Command) -> bool:
    """A variable assignment or the end of a loop, which need no check of their own."""
    return bool(re.fullmatch(r"[A-Z_]+=\S+", command.words[0])) or command.words == ["done"]


def static_problems(command: Command) -> list[str] | None:
    """The problems of a command, or None when no checker knows its program."""
    program = command.program
    if program == "pilotage":
        return pilotage_problems(command)
    if program.startswith("python") and "-m" in command.words:
        return python_module_problems(command)
    if program == "kubectl":
        return kubectl_problems(command)
    if program == "docker":
        return docker_problems(command)
    if program == "make":
        return make_problems(command)
    if program == "curl" or shell_plumbing(command):
        return []
    return None


def json_output(command: Command) -> Any:
    return json.loads("\n".join(command.output)) if command.output else None
