"""`pilotage dashboard`: serve the dashboard on its own, over a local state directory or,
with ``--kube``, over a cluster through the user's kubeconfig (the user's own permissions)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pilotage.dashboard.app import DashboardApp, Sampler
from pilotage.dashboard.history import History
from pilotage.dashboard.serve import serve_foreground
from pilotage.dashboard.source import LocalSource, Source
from pilotage.listening import listen
from pilotage.local.cli import state_dir
from pilotage.local.errors import CliError
from pilotage.local.store import DEFAULT_NAMESPACE, StoreError

DEFAULT_PORT = 8470


def build(source: Source, read_only: bool, loopback_only: bool) -> tuple[DashboardApp, Sampler]:
    history = History()
    sampler = Sampler(source, history)
    return DashboardApp(source, history, read_only=read_only, loopback_only=loopback_only), sampler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilotage dashboard",
        description="Serve the web dashboard over a local state directory or, with --kube, "
        "a cluster through the kubeconfig (acting with the user's own permissions).",
    )
    p.add_argument("--kube", action="store_true", help="read the cluster of the kubeconfig")
    p.add_argument("--context", help="kubeconfig context (with --kube)")
    p.add_argument(
        "--in-cluster",
        action="store_true",
        help="with --kube: use the pod's service account, not a kubeconfig (the chart's pod)",
    )
    p.add_argument(
        "-A", "--all-namespaces", action="store_true", help="with --kube: every namespace"
    )
    p.add_argument(
        "--state-dir", help="state directory (default $PILOTAGE_STATE_DIR or ./.pilotage)"
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="namespace (repeatable with --kube; default: all in a state directory, "
        "default on a cluster)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--read-only", action="store_true", help="no action buttons; POSTs refused")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    source: Any
    try:
        if args.kube:
            from pilotage.dashboard.source import KubeSource

            namespaces = None if args.all_namespaces else args.namespace or [DEFAULT_NAMESPACE]
            source = KubeSource(namespaces, args.context, args.in_cluster)
        else:
            if args.namespace and len(args.namespace) > 1:
                raise CliError("one --namespace at most on a state directory")
            source = LocalSource(
                state_dir(args.state_dir), args.namespace[0] if args.namespace else None
            )
        sock = listen(args.host, args.port, "the dashboard")
    except (CliError, StoreError, OSError) as exc:
        print(f"pilotage dashboard: error: {exc}", file=sys.stderr)
        return 1
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    app, sampler = build(source, args.read_only, loopback_only=loopback)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"dashboard: http://{host}:{sock.getsockname()[1]}/ ({source.where})", flush=True)
    sampler.start()
    try:
        serve_foreground(app, sock)
    finally:
        sampler.stop()
    return 0
