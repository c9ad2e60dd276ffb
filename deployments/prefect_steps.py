"""Steps for ``prefect.yaml``: ``prefect deploy`` uploads a program to qsflow before deploying it.

    build:
      - deployments.prefect_steps.upload_program:
          id: upload
          title: transpile-remote
          working_dir: examples/source_files
          entrypoint: transpile_remote.py

The step stores a new version of the program (the same as ``client.upload``: the function
``transpile-remote`` with its own deployment, what qsflow clients run) on the server ``prefect
deploy`` talks to, and returns ``{"title", "version"}`` for the deployment's parameters
(``version: "{{ upload.version }}"``).
"""

from __future__ import annotations

from typing import Any, Optional


def upload_program(title: str, working_dir: str, entrypoint: str, provider: Optional[str] = None,
                   dependencies: Optional[list[str]] = None, env_vars: Optional[dict[str, str]] = None,
                   description: Optional[str] = None, **_: Any) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL

    from serverless_compat import QiskitFunction, ServerlessClient

    client = ServerlessClient(host=PREFECT_API_URL.value() or None)
    function = client.upload(QiskitFunction(
        title=title, provider=provider, working_dir=working_dir, entrypoint=entrypoint,
        dependencies=dependencies or [], env_vars=env_vars or {}, description=description,
    ))
    full_title = f"{provider}/{title}" if provider else title
    return {"title": full_title, "version": int(function.version)}
