"""Calls a cache=True distributed task twice with the same argument and once with another, and an uncached one
twice; every run of a body appends a line to the side-effect file named in the arguments."""

import os

from qiskit_serverless import distribute_task, get, get_arguments, save_result

RUNS = get_arguments()["runs_file"]


def note(what):
    with open(RUNS, "a") as handle:
        handle.write(f"{what} {os.getpid()}\n")


@distribute_task(target={"cpu": 0.5}, cache=True)
def heavy(x):
    note(f"heavy {x}")
    return {"value": x * 10}


@distribute_task(target={"cpu": 0.5})
def uncached(x):
    note(f"uncached {x}")
    return x + 1


values = [get(heavy(2)), get(heavy(2)), get(heavy(3)), get(uncached(2)), get(uncached(2))]
save_result({"values": values})
