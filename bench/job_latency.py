"""run() -> DONE for a trivial program on the embedded default, against a plain subprocess.

    python -m bench.job_latency [--runs 5]

Uses a fresh qsflow home (its own embedded server, stopped at the end). Prints the cold figures
(server start, first job) and the warm run() -> DONE times with their ratio to running the same
program with `python program.py`, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = """from qiskit_serverless import get_arguments, save_result
save_result({"echo": get_arguments()})
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qsflow-bench-") as tmp:
        os.environ["QSFLOW_HOME"] = str(Path(tmp) / "home")
        source = Path(tmp) / "src"
        source.mkdir()
        (source / "trivial.py").write_text(PROGRAM)
        alias = Path(__file__).resolve().parent.parent / "serverless_compat" / "_alias"
        env = {**os.environ, "PYTHONPATH": f"{alias}{os.pathsep}{Path(__file__).resolve().parent.parent}"}

        baseline = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "trivial.py"], cwd=source, env=env, check=True,
                           capture_output=True)
            baseline.append(time.perf_counter() - started)

        from deployments import server
        from serverless_compat import QiskitFunction, ServerlessClient

        try:
            started = time.perf_counter()
            client = ServerlessClient()
            server_start = time.perf_counter() - started
            function = client.upload(QiskitFunction(title="trivial", entrypoint="trivial.py",
                                                    working_dir=str(source)))
            timings = []
            for index in range(args.runs + 1):
                started = time.perf_counter()
                job = function.run(index=index)
                assert job.wait(timeout=300) == "DONE", job.logs()
                timings.append(time.perf_counter() - started)
        finally:
            server.stop()
    first, warm = timings[0], timings[1:]
    p50 = statistics.median(warm)
    base = statistics.median(baseline)
    print(f"embedded server start (cold):        {server_start:7.2f} s")
    print(f"first job run() -> DONE (cold):      {first:7.2f} s")
    print(f"warm run() -> DONE, p50 of {len(warm)}:       {p50:7.2f} s  (min {min(warm):.2f}, max {max(warm):.2f})")
    print(f"plain `python program.py`, p50:      {base:7.2f} s")
    print(f"ratio warm job / plain subprocess:   {p50 / base:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
