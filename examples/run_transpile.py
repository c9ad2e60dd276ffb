"""The main job: upload the seed's transpile program and run it on the embedded default.

Prints each status change as it happens, then a summary of the result.
    python examples/run_transpile.py [--circuits 4] [--backend fake_sherbrooke] [--host URL]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from qiskit.circuit.random import random_circuit

from serverless_compat import QiskitFunction, ServerlessClient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--circuits", type=int, default=4, help="how many circuits to transpile")
    parser.add_argument("--backend", default="fake_sherbrooke", help="backend name (fake_* works offline)")
    parser.add_argument("--optimization-level", type=int, default=2)
    parser.add_argument("--host", default=None, help="a Prefect API URL; default: the embedded server")
    args = parser.parse_args()

    started = time.monotonic()
    print("Connecting (the first run starts the embedded Prefect server; later runs reuse it)...")
    client = ServerlessClient(host=args.host)
    print(f"Prefect API: {client.host}  (UI: {client.host.removesuffix('/api')})")
    function = client.upload(QiskitFunction(
        title="transpile-remote",
        entrypoint="transpile_remote.py",
        working_dir=str(Path(__file__).parent / "source_files"),
    ))
    print(f"Uploaded {function} version {function.version}")

    circuit = random_circuit(5, depth=4, measure=True, seed=42)
    job = function.run(
        circuit=circuit,
        circuit_list=[random_circuit(5, depth=4, measure=True, seed=s) for s in range(args.circuits)],
        optimization_level=args.optimization_level,
        backend=args.backend,
    )
    print(f"Job {job.job_id} submitted")
    printed: list[str] = []
    while True:
        # the statuses entered so far, in order (one shorter than the poll, as INITIALIZING often is, included),
        # then the current one, read after them
        entered = list(job.resource_usage())
        status = job.status()
        for name in [*entered, status]:
            if name not in printed:
                print(f"  [{time.monotonic() - started:6.1f} s] {name}")
                printed.append(name)
        if status in {"DONE", "ERROR", "CANCELED"}:
            break
        time.sleep(0.2)

    if status != "DONE":
        print(job.logs())
        print(job.error_message())
        return 1
    result = job.result()
    usage = result["metadata"]["resource_usage"]["RUNNING: OPTIMIZING_FOR_HARDWARE"]
    print(f"Result: {len(result['circuits'])} ISA circuits for {args.backend}")
    for index, isa in enumerate(result["circuits"]):
        print(f"  circuit {index}: depth {isa.depth()}, ops {dict(isa.count_ops())}")
    print(f"  transpile wall time in the job: {usage['CPU_TIME']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
