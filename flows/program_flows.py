"""Entrypoints for ``prefect.yaml``: the runner flow under a program's name.

``entrypoint: flows/program_flows.py:transpile_remote`` is ``flows.runner.run_program`` named
``transpile-remote`` (underscores become dashes), so ``prefect deploy`` writes the same deployment,
``transpile-remote/transpile-remote``, that ``client.upload`` registers for the program: one
deployment per program, whichever made it last, and qsflow clients and the Prefect UI run the same
thing.
"""

from __future__ import annotations

from typing import Any


def __getattr__(attribute: str) -> Any:
    if attribute.startswith("__"):
        raise AttributeError(attribute)
    from flows.runner import run_program

    return run_program.with_options(name=attribute.replace("_", "-"))
