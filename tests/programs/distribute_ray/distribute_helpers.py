"""Distributed tasks defined in a module of the program's working_dir (imported by the Ray workers)."""

from qiskit_serverless import distribute_task


class Unlucky(ValueError):
    pass


@distribute_task(target={"cpu": 0.5})
def cube(x):
    return x ** 3


@distribute_task()
def unlucky(x):
    raise Unlucky(f"{x} is unlucky")
