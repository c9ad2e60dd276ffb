"""What a refused request could have left behind on the tests' server: Prefect objects and stored files.

``footprint(prefect, home)`` lists the deployments, flows, block documents and variables the
Prefect API knows and every file under the local store's ``programs/`` and ``data/`` folders
(partial uploads included); two footprints taken around a refused call must be equal.
``runs_of(prefect, full_title)`` counts the flow runs of one function's deployment.
"""

from __future__ import annotations

from pathlib import Path


def footprint(prefect, home: Path) -> dict[str, list[str]]:
    return {
        "deployments": sorted(d.name for d in prefect.read_deployments()),
        "flows": sorted(f.name for f in prefect.read_flows()),
        "blocks": sorted(str(b.name) for b in prefect.read_block_documents(include_secrets=False)),
        "variables": sorted(v.name for v in prefect.read_variables()),
        "stored": stored(home),
    }


def stored(home: Path) -> list[str]:
    """Every path under the local store's ``programs/`` and ``data/`` folders, partial uploads included."""
    store = home / "storage"
    return sorted(str(p.relative_to(store)) for folder in ("programs", "data") for p in (store / folder).rglob("*"))


def runs_of(prefect, full_title: str) -> int:
    """How many flow runs the function's deployment has (0 when there is no such deployment)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from deployments.programs import deployment_name

    name = deployment_name(full_title).split("/")[1]
    return prefect.count_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))
