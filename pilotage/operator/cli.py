"""`pilotage operator`: run the Kubernetes operator (kopf) with settings from the environment."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pilotage.operator.settings import SettingsError, env_name, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilotage operator",
        description="Reconcile Pilotage resources on a Kubernetes cluster. Settings come from "
        "PILOTAGE_* environment variables (see docs/operator.md), over --settings FILE.",
    )
    p.add_argument("--settings", type=Path, help="YAML file of settings (e.g. a mounted ConfigMap)")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help=f"namespace to watch (repeatable; default: {env_name('namespaces')} or cluster-wide)",
    )
    p.add_argument("--standalone", action="store_true", help="run without peering")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides: dict[str, object] = {}
    if args.namespace:
        overrides["namespaces"] = args.namespace
    if args.standalone:
        overrides["standalone"] = True
    if args.kubeconfig:
        overrides["kubeconfig"] = args.kubeconfig
    try:
        settings = load_settings(args.settings, **overrides)
    except SettingsError as exc:
        print(f"pilotage operator: {exc}", file=sys.stderr)
        return 2

    import kopf

    from pilotage.kubeconnection import ConnectionError_, client_configuration
    from pilotage.operator.app import build_operator

    try:
        cfg = client_configuration(settings.kubeconfig)
    except ConnectionError_ as exc:
        print(f"pilotage operator: {exc}", file=sys.stderr)
        return 2
    app = build_operator(settings, cfg)
    scope = ", ".join(settings.namespaces) if settings.namespaces else "all namespaces"
    print(
        f"pilotage operator: watching {scope}; peering "
        f"{'off' if settings.standalone else f'{settings.peering_name!r} priority {app.priority}'}",
        file=sys.stderr,
        flush=True,
    )
    kopf.run(**app.run_kwargs())
    return 0
