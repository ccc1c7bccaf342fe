"""python -m testcluster.nodeagent [--options] | cleanup --bridge B --state-dir D"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cleanup"]:
        parser = argparse.ArgumentParser(prog="nodeagent cleanup")
        parser.add_argument("--bridge", required=True)
        parser.add_argument("--state-dir", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        from testcluster.nodeagent.network import cleanup

        for line in cleanup(args.bridge, args.state_dir):
            print(f"removed {line}")
        return 0
    parser = argparse.ArgumentParser(prog="nodeagent")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--service-cidr", required=True)
    parser.add_argument("--cluster-dns-domain", default="cluster.local")
    parser.add_argument("--apiserver", required=True, help="host:port of the API server")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument(
        "--no-service-proxy",
        action="store_true",
        help="no ClusterIP addresses or listeners (a second agent on a cluster that has one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from testcluster.nodeagent.agent import Agent

    args.state_dir.mkdir(parents=True, exist_ok=True)
    agent = Agent(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        bridge=args.bridge,
        pod_cidr=args.pod_cidr,
        service_cidr=args.service_cidr,
        domain=args.cluster_dns_domain,
        apiserver=args.apiserver,
        state_dir=args.state_dir,
        venv=args.venv,
        service_proxy=not args.no_service_proxy,
    )
    asyncio.run(agent.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
