"""The `pilotage` command: one entry point, each subcommand owned by its component.

Subcommands are imported lazily so that the server image (no scikit-learn, no kopf)
can run `pilotage serve` and `pilotage route` without the other components installed.
Each target is a ``main(argv: list[str]) -> int`` that parses its own arguments.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# name -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("pilotage.local.up", "main", "run the embedded control plane on manifests"),
    "apply": ("pilotage.local.cli", "apply", "store manifests in the local state"),
    "get": ("pilotage.local.cli", "get", "list resources in the local state"),
    "describe": ("pilotage.local.cli", "describe", "show one resource in detail"),
    "delete": ("pilotage.local.cli", "delete", "delete resources from the local state"),
    "promote": ("pilotage.local.cli", "promote", "promote a rollout (next step or --full)"),
    "abort": ("pilotage.local.cli", "abort", "abort a rollout and return to stable"),
    "retry": ("pilotage.local.cli", "retry", "retry an aborted or rolled-back rollout"),
    "retrain": ("pilotage.local.cli", "retrain", "ask a DriftMonitor to retrain now"),
    "refresh": ("pilotage.local.cli", "refresh", "re-read and re-profile a Dataset"),
    "dashboard": ("pilotage.dashboard.cli", "main", "serve the web dashboard (local or --kube)"),
    "demo": ("pilotage.local.demo", "main", "play the whole lifecycle end to end"),
    "operator": ("pilotage.operator.cli", "main", "run the Kubernetes operator"),
    "serve": ("pilotage.server.cli", "main", "serve one ONNX model version"),
    "route": ("pilotage.router.cli", "main", "run the traffic router"),
    "train": ("pilotage.trainer.cli", "train", "train and export a model from manifests"),
    "profile": ("pilotage.trainer.cli", "profile", "validate and profile a Dataset"),
    "crds": ("pilotage.api.crd", "main", "write the CRD YAML generated from the models"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: pilotage COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {spec[2]}" for name, spec in COMMANDS.items()]
    lines += ["", "Run `pilotage COMMAND --help` for a command's options."]
    return "\n".join(lines)


def _resolve(name: str) -> Callable[[list[str]], int]:
    module_name, func_name, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    func: Callable[[list[str]], int] = getattr(module, func_name)
    return func


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"pilotage: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        func = _resolve(name)
    except ImportError as exc:
        print(
            f"pilotage {name}: this installation lacks what it needs ({exc.name or exc}); "
            "install pilotage[all]",
            file=sys.stderr,
        )
        return 2
    try:
        return func(rest)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
