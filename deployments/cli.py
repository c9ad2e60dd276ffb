"""``qsflow``: manage the embedded Prefect server and worker.

    qsflow server start    start the local Prefect server and worker (or find them running)
    qsflow server status   show what runs, and where
    qsflow server stop     stop both
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="qsflow", description="qsflow: Qiskit Serverless on Prefect and Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    server_parser = commands.add_parser("server", help="the embedded Prefect server and worker")
    server_parser.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    if args.command == "server":
        return _server(args.action)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
