"""Building Prefect's deferred pydantic models once, in a process that later forks or serves many runs."""

from __future__ import annotations

import contextlib
import inspect
import sys


def build_deferred_models() -> None:
    """Prefect's pydantic models build their validators on first use (``defer_build``): ~270 of them once Prefect's
    engine is loaded, and a process's first ``FlowRun``, ``State`` ... paid that build (py-spy: ~50 ms a job under
    load for ``read_flow_run`` alone). Build those of every loaded ``prefect.*`` module now (~75 ms, once)."""
    import pydantic

    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("prefect."):
            continue
        for value in list(vars(module).values()):
            if (inspect.isclass(value) and issubclass(value, pydantic.BaseModel) and value.__module__ == name
                    and not value.__pydantic_complete__):
                with contextlib.suppress(Exception):
                    value.model_rebuild()
