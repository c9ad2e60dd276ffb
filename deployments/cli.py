"""``qsflow``: manage the embedded Prefect server and worker.

    qsflow server start    start the local Prefect server and worker (or find them running)
    qsflow server status   show what runs, and where
    qsflow server stop     stop both
    qsflow docker-pool create   create the Docker work pool image functions run on (run it where Docker runs)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from deployments import server
from deployments.settings import home


def _server(action: str) -> int:
    if action == "start":
        url = server.ensure_running()
        print(f"qsflow server running: Prefect API {url}, UI {url.removesuffix('/api')}")
        return 0
    if action == "stop":
        print("qsflow server stopped." if server.stop() else "qsflow server was not running.")
        return 0
    state = server.status()
    running = state["server"] and state["worker"]
    print(json.dumps({"home": str(home()), **state}, indent=2))
    return 0 if running else 3


def _docker_pool(action: str) -> int:
    from deployments import images
    from deployments.connection import prefect_api
    from deployments.settings import api_url, configured_host

    url = api_url(configured_host()) if configured_host() else server.ensure_running()
    with prefect_api(url) as client:
        pool = images.ensure_pool(client)
    print(f"Work pool {pool!r} (type docker) is ready on {url}. Start its worker where Docker runs:\n"
          f"  PREFECT_API_URL={url} prefect worker start --pool {pool} --type docker")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="qsflow", description="qsflow: Qiskit Serverless on Prefect and Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    server_parser = commands.add_parser("server", help="the embedded Prefect server and worker")
    server_parser.add_argument("action", choices=["start", "stop", "status"])
    docker_parser = commands.add_parser("docker-pool", help="the Prefect Docker work pool of image functions")
    docker_parser.add_argument("action", choices=["create"])
    args = parser.parse_args(argv)
    if args.command == "server":
        return _server(args.action)
    if args.command == "docker-pool":
        return _docker_pool(args.action)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
