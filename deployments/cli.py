"""``qsflow``: manage the embedded Prefect server and worker.

    qsflow server start    start the local Prefect server and worker (or find them running)
    qsflow server status   show what runs, and where
    qsflow server stop     stop both
    qsflow docker-pool create   create the Docker work pool image functions run on (run it where Docker runs)
    qsflow worker --pool POOL [--limit N] [--name NAME]   serve a process work pool of the Prefect server at
                                PREFECT_API_URL with the warm worker (deployments/worker.py; `qsflow worker --help`)
    qsflow cluster up|down|status   cluster mode on this machine: PostgreSQL, a Prefect server, two workers,
                                two Ray nodes, S3 (deployments/local_cluster.py; `qsflow cluster up --help`)
    qsflow schedule TITLE --cron "0 * * * *" [--args args.json] [--timezone Europe/Paris]
                                run a function on a schedule (or --interval SECONDS, --rrule RRULE)
    qsflow schedules TITLE      list a function's schedules and its next scheduled jobs
    qsflow unschedule TITLE ID  remove one schedule
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


def _schedule(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deployments import schedules

    arguments = {}
    if args.args:
        try:
            arguments = json.loads(Path(args.args).read_text())
        except (OSError, ValueError) as exc:
            print(f"--args {args.args}: {exc}. Give a JSON file holding an object of arguments.", file=sys.stderr)
            return 2
    try:
        info = schedules.add(args.title, cron=args.cron, interval=args.interval, rrule=args.rrule,
                             timezone=args.timezone, arguments=arguments)
    except (ValueError, LookupError) as exc:
        print(f"qsflow schedule: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.__dict__, indent=2))
    return 0


def _schedules(args: argparse.Namespace) -> int:
    from deployments import schedules

    try:
        listed = [s.__dict__ for s in schedules.list_schedules(args.title)]
        upcoming = [t.isoformat() for t in schedules.upcoming(args.title)]
    except LookupError as exc:
        print(f"qsflow schedules: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"schedules": listed, "next_runs": upcoming}, indent=2))
    return 0


def _unschedule(args: argparse.Namespace) -> int:
    from deployments import schedules

    try:
        schedules.remove(args.title, args.schedule_id)
    except LookupError as exc:
        print(f"qsflow unschedule: {exc}", file=sys.stderr)
        return 2
    print(f"Schedule {args.schedule_id} of {args.title} removed.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="qsflow", description="qsflow: Qiskit Serverless on Prefect and Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    server_parser = commands.add_parser("server", help="the embedded Prefect server and worker")
    server_parser.add_argument("action", choices=["start", "stop", "status"])
    docker_parser = commands.add_parser("docker-pool", help="the Prefect Docker work pool of image functions")
    docker_parser.add_argument("action", choices=["create"])
    schedule_parser = commands.add_parser("schedule", help="run a function on a cron, interval or rrule schedule")
    schedule_parser.add_argument("title", help="the function's title (provider/title for a provider function)")
    when = schedule_parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='a cron string, e.g. "0 * * * *"')
    when.add_argument("--interval", type=float, help="seconds between runs")
    when.add_argument("--rrule", help='an iCalendar RRule, e.g. "FREQ=DAILY;BYHOUR=6"')
    schedule_parser.add_argument("--timezone", help="e.g. Europe/Paris (default UTC)")
    schedule_parser.add_argument("--args", help="a JSON file holding the arguments of every run")
    list_parser = commands.add_parser("schedules", help="list a function's schedules and next runs")
    list_parser.add_argument("title")
    remove_parser = commands.add_parser("unschedule", help="remove a schedule")
    remove_parser.add_argument("title")
    remove_parser.add_argument("schedule_id")
    commands.add_parser("worker", add_help=False,
                        help="serve a process work pool of any Prefect server (qsflow worker --pool POOL --limit N)")
    commands.add_parser("cluster", add_help=False, help="cluster mode on this machine (qsflow cluster up|down|status)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:  # its own options: `qsflow worker --help`
        from deployments import worker

        return worker.main(argv[1:])
    if argv[:1] == ["cluster"]:  # its own options: `qsflow cluster up --help`
        from deployments import local_cluster

        return local_cluster.main(argv[1:])
    args = parser.parse_args(argv)
    if args.command in ("schedule", "schedules", "unschedule"):
        return {"schedule": _schedule, "schedules": _schedules, "unschedule": _unschedule}[args.command](args)
    if args.command == "server":
        return _server(args.action)
    if args.command == "docker-pool":
        return _docker_pool(args.action)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
