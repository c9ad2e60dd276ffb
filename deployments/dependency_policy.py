"""An optional allow-list for the ``dependencies`` of uploaded functions, as Qiskit Serverless's gateway has.

Off unless the Prefect server holds a variable named ``qsflow-allowed-dependencies`` (the embedded
default has none, so any dependency is accepted). Its value lists requirements as pip takes them,
either as a JSON list or as requirements.txt text::

    prefect variable set qsflow-allowed-dependencies '["tomli-w==1.0.0", "mthree==3.0.0", "scipy>=1.13"]'

Then an upload whose dependency is not listed fails with "Dependency `name` is not allowed", and
one pinning a version outside the listed specifier with "Dependency (name) version (v) is not
allowed"; nothing of that upload is stored. A listed name without a version is allowed as is.
"""

from __future__ import annotations

from typing import Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ALLOWLIST_VARIABLE = "qsflow-allowed-dependencies"


def _parse(entries: list[str]) -> dict[str, Requirement]:
    allowed = {}
    for entry in entries:
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            requirement = Requirement(entry)
        except InvalidRequirement as exc:
            raise ValueError(
                f"The Prefect variable {ALLOWLIST_VARIABLE!r} lists {entry!r}, which is not a requirement "
                f"({exc}); fix the variable, e.g. `prefect variable set {ALLOWLIST_VARIABLE} "
                "'[\"numpy==2.1.0\"]' --overwrite`."
            ) from None
        allowed[canonicalize_name(requirement.name)] = requirement
    return allowed


def allowlist() -> Optional[dict[str, Requirement]]:
    """The allowed requirements by package name, or None when no allow-list is set (everything allowed).

    Reads the variable from the Prefect API in the current settings context.
    """
    from prefect.variables import Variable

    value = Variable.get(ALLOWLIST_VARIABLE, default=None)
    if value is None:
        return None
    if isinstance(value, str):
        return _parse(value.splitlines())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _parse(value)
    raise ValueError(
        f"The Prefect variable {ALLOWLIST_VARIABLE!r} must hold a list of requirement strings "
        f"(or requirements.txt text), not {type(value).__name__}."
    )


def check(dependencies: list[str], allowed: Optional[dict[str, Requirement]]) -> None:
    """Raise ValueError for the first dependency the allow-list refuses (no allow-list: nothing refused)."""
    if allowed is None:
        return
    for dependency in dependencies:
        requirement = Requirement(dependency)
        listed = allowed.get(canonicalize_name(requirement.name))
        if listed is None:
            names = ", ".join(sorted(str(r) for r in allowed.values())) or "nothing"
            raise ValueError(
                f"Dependency `{requirement.name}` is not allowed. This server allows: {names} "
                f"(Prefect variable {ALLOWLIST_VARIABLE!r}); ask its administrator to add it."
            )
        for specifier in requirement.specifier:
            if not listed.specifier.contains(specifier.version, prereleases=True):
                raise ValueError(
                    f"Dependency ({requirement.name}) version ({specifier.version}) is not allowed. "
                    f"Valid versions: {listed}"
                )
