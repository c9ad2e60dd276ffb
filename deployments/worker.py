"""``qsflow worker``: serve a process work pool of any Prefect server with qsflow's warm worker.

    PREFECT_API_URL=http://host:4200/api qsflow worker --pool qsflow [--limit 4] [--name gpu-box-1]

The same job as ``prefect worker start --pool qsflow --type process`` (whose options it takes: ``--type process``,
``--name``, ``--limit``, ``--work-queue``, ``--prefetch-seconds``), but runs of qsflow's runner flow start forked
from a process that has Prefect and qsflow's runner loaded (:mod:`deployments.warm_worker`) instead of a fresh
interpreter each (2-4 s a job here), their programs are forked by its program zygote with Ray, Prefect and Qiskit
loaded (:mod:`deployments.program_zygote`; ``QSFLOW_PROGRAM_ZYGOTE=0`` turns it off), and the worker polls as soon
as a run is scheduled or one of its own runs ends. The API URL (and ``PREFECT_API_AUTH_STRING``) come from the
environment or Prefect's profile, as for Prefect's worker.

``QSFLOW_WARM_WORKER=0``, or a Prefect without the runner internals the warm worker builds on, runs Prefect's stock
worker with the same options instead (it replaces this process: same pid).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from typing import Optional, Sequence


class WorkerError(RuntimeError):
    """``qsflow worker`` cannot start; the message names the fix."""


def warm_available() -> bool:
    """True unless ``QSFLOW_WARM_WORKER=0`` or the installed Prefect lacks the runner internals the warm worker
    builds on (written against Prefect 3.9.1)."""
    if os.environ.get("QSFLOW_WARM_WORKER", "1") == "0":
        return False
    return importlib.util.find_spec("prefect.runner._flow_run_executor") is not None


def command(pool: str, name: Optional[str] = None, limit: Optional[int] = None) -> list[str]:
    """The command line that starts ``qsflow worker`` with this interpreter (for scripts that spawn workers)."""
    args = [sys.executable, "-m", "deployments.cli", "worker", "--pool", pool]
    if name:
        args += ["--name", name]
    if limit is not None:
        args += ["--limit", str(limit)]
    return args


def stock_command(args: argparse.Namespace) -> list[str]:
    """Prefect's own process worker with the same options."""
    line = [sys.executable, "-m", "prefect", "worker", "start", "--pool", args.pool, "--type", "process"]
    if args.name:
        line += ["--name", args.name]
    if args.limit is not None:
        line += ["--limit", str(args.limit)]
    for queue in args.work_queue or []:
        line += ["--work-queue", queue]
    if args.prefetch_seconds is not None:
        line += ["--prefetch-seconds", str(args.prefetch_seconds)]
    return line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the most jobs this worker runs at once, a whole number of 1 or more "
            "(leave --limit out for no limit)")
    return value


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole seconds, 0 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qsflow worker",
                                     description="Serve a process work pool of any Prefect server with qsflow's "
                                     "warm worker (as `prefect worker start` does, faster).",
                                     epilog="The Prefect server: PREFECT_API_URL (environment or Prefect profile).")
    parser.add_argument("--pool", "-p", required=True, help="the process work pool to serve (qsflow's is 'qsflow')")
    parser.add_argument("--type", "-t", default="process", help="the pool's type: process, the only one it serves "
                        "(accepted so that `prefect worker start`'s command line works here)")
    parser.add_argument("--name", "-n", help="this worker's name (default: a generated one); no '/' or '%%'")
    parser.add_argument("--limit", "-l", type=_positive_int,
                        help="most jobs this worker runs at once (default: no limit)")
    parser.add_argument("--work-queue", "-q", action="append", help="serve only this queue of the pool (repeatable)")
    parser.add_argument("--prefetch-seconds", type=_seconds,
                        help="also take runs due within this many seconds (default PREFECT_WORKER_PREFETCH_SECONDS)")
    return parser


def check(args: argparse.Namespace) -> str:
    """The API URL, once the server answers and ``--pool`` is (or will be created as) a process pool."""
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import get_current_settings

    from deployments.connection import prefect_api
    from deployments.server import healthy

    if args.type != "process":
        raise WorkerError(f"--type {args.type}: qsflow worker serves process work pools only. Serve a {args.type} "
                          f"pool with `prefect worker start --pool {args.pool} --type {args.type}`.")
    if args.name and ("/" in args.name or "%" in args.name):
        raise WorkerError(f"--name {args.name!r}: a worker's name cannot contain '/' or '%'; choose another.")
    url = get_current_settings().api.url
    if not url:
        raise WorkerError("PREFECT_API_URL is not set, so there is no server to serve: set it to the Prefect API "
                          "the jobs are sent to, e.g. PREFECT_API_URL=http://127.0.0.1:4200/api qsflow worker "
                          f"--pool {args.pool} (or `prefect config set PREFECT_API_URL=...`).")
    if not healthy(url, timeout=5.0):
        raise WorkerError(f"No Prefect server answers at PREFECT_API_URL={url}: start it (`prefect server start`, "
                          "`qsflow cluster up`) or fix the URL.")
    try:
        with prefect_api(url) as client:
            pool = client.read_work_pool(args.pool)
    except ObjectNotFound:
        print(f"qsflow worker: work pool {args.pool!r} does not exist on {url}; the worker creates it "
              "(type process), as Prefect's does.", file=sys.stderr)
        return url
    except Exception as exc:  # e.g. 401: the server wants PREFECT_API_AUTH_STRING
        raise WorkerError(f"The Prefect server at {url} refused to read work pool {args.pool!r}: {exc}. "
                          "If it requires authentication, set PREFECT_API_AUTH_STRING.") from exc
    if pool.type != "process":
        raise WorkerError(f"Work pool {args.pool!r} is of type {pool.type!r}; qsflow worker serves process pools. "
                          f"Serve it with `prefect worker start --pool {args.pool}`, or give a process pool.")
    return url


def _stop(signum: int, _frame: object) -> None:
    print(f"qsflow worker: stopped ({signal.Signals(signum).name}).", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        url = check(args)
    except WorkerError as exc:
        print(f"qsflow worker: {exc}", file=sys.stderr)
        return 2
    if not warm_available():
        print("qsflow worker: Prefect's stock process worker (QSFLOW_WARM_WORKER=0 or no warm-worker support in "
              "this Prefect)", file=sys.stderr, flush=True)
        line = stock_command(args)
        os.execv(line[0], line)
    from deployments import warm_worker

    # SIGTERM and SIGINT end it at once (its forkserver follows); the jobs it started run on and report
    # themselves, unless the signal reaches them too (a terminal's Ctrl-C goes to the whole process group). Not
    # Prefect's CLI handlers: they turn SIGTERM into a SIGINT that this worker's event loop does not act on.
    signal.signal(signal.SIGINT, _stop)
    print(f"qsflow worker: serving work pool {args.pool!r} of {url}"
          + (f", at most {args.limit} jobs at once" if args.limit else ""), file=sys.stderr, flush=True)
    warm_worker.serve(args.pool, args.name, limit=args.limit, work_queues=args.work_queue,
                      prefetch_seconds=args.prefetch_seconds)
    return 0
