"""How an environment pinning a real ``qiskit-serverless`` release is resolved so that it imports.

Old releases declare loose requirements (``qiskit-ibm-runtime>=0.29``); resolved today they get
packages years newer than they were written for and ``import qiskit_serverless`` fails
(/work/shared/notes/pinned-releases.md). Resolved as of the release's own publication date they
import. So a dependency list that pins ``qiskit-serverless==X`` (X in the table below) is installed
with uv's ``--exclude-newer`` set to the day after X was published, except for the packages the
list itself names: those are the user's explicit choice and resolve without the cut-off.

The table is fixed data (publication dates do not change; looked up once from PyPI's JSON API,
``upload_time`` of each release's first file) rather than a look-up per install: no extra
registry request per environment, the same resolution offline, with a mirror or with a private
index. Releases newer than the table resolve without a cut-off (today's packages fit them).

One more rule, for qsflow's own client: it encodes circuits as QPY with Qiskit 2, whose oldest
writable QPY format (13) needs Qiskit >= 1.3 to read. Releases published before Qiskit 1.3
(0.16.0 to 0.18.0) resolve Qiskit 1.2 at their date, so their environments get the newest Qiskit
1.x instead (``qiskit>=1.3,<2``, measured: 0.16.3 imports and reads circuits with Qiskit 1.4.6).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PACKAGE = "qiskit-serverless"

# Release -> the date its first file was uploaded to PyPI (UTC).
PUBLISHED = {
    "0.16.0": "2024-08-26", "0.16.1": "2024-08-28", "0.16.2": "2024-09-04", "0.16.3": "2024-09-11",
    "0.17.0": "2024-09-26", "0.17.1": "2024-10-09", "0.18.0": "2024-11-04", "0.18.1": "2024-12-16",
    "0.19.0": "2025-02-04", "0.20.0": "2025-02-25", "0.21.0": "2025-03-18", "0.21.1": "2025-03-19",
    "0.22.0": "2025-05-07", "0.23.0": "2025-06-05", "0.24.0": "2025-06-17", "0.25.0": "2025-07-07",
    "0.25.1": "2025-07-14", "0.25.2": "2025-07-23", "0.25.3": "2025-07-31", "0.25.4": "2025-08-06",
    "0.26.0": "2025-09-17", "0.26.1": "2025-09-19", "0.27.0": "2025-10-28", "0.27.1": "2025-11-06",
    "0.28.0": "2025-12-03", "0.29.0": "2026-02-10", "0.30.0": "2026-03-04", "0.30.1": "2026-03-19",
    "0.31.0": "2026-04-22", "0.32.0": "2026-06-02", "0.33.0": "2026-07-09", "0.34.0": "2026-07-22",
    "0.35.0": "2026-08-20", "0.35.1": "2026-08-26", "0.36.0": "2026-09-03", "0.37.0": "2026-10-15",
}

# Published before Qiskit 1.3 existed: these need a newer Qiskit 1.x to read qsflow's circuits.
_QISKIT_1_3 = Version("0.18.1")
_NEWER_QISKIT_1 = "qiskit>=1.3,<2"
_NO_CUT_OFF = "2100-01-01"  # uv's per-package cut-off for "any upload date"


def pinned_release(dependencies: list[str]) -> Optional[str]:
    """The qiskit-serverless release the list pins exactly (``==X``), or None."""
    for entry in dependencies:
        try:
            requirement = Requirement(entry)
        except InvalidRequirement:
            continue  # uv reports it, with its own message
        if canonicalize_name(requirement.name) != PACKAGE:
            continue
        pins = [spec.version for spec in requirement.specifier if spec.operator in ("==", "===")]
        if len(pins) == 1 and "*" not in pins[0]:
            try:
                return str(Version(pins[0]))
            except InvalidVersion:
                return None
    return None


def install_options(dependencies: list[str]) -> tuple[list[str], list[str]]:
    """(extra uv arguments, extra requirements) for installing ``dependencies``.

    Empty unless the list pins a release in the table.
    """
    release = pinned_release(dependencies)
    if release is None or release not in PUBLISHED:
        return [], []
    cut_off = date.fromisoformat(PUBLISHED[release]) + timedelta(days=1)
    named = set()
    for entry in dependencies:
        try:
            named.add(canonicalize_name(Requirement(entry).name))
        except InvalidRequirement:
            continue
    extra_requirements = []
    if Version(release) < _QISKIT_1_3 and "qiskit" not in named:
        extra_requirements.append(_NEWER_QISKIT_1)
        named.add("qiskit")
    options = ["--exclude-newer", cut_off.isoformat()]
    for name in sorted(named - {PACKAGE}):
        options += ["--exclude-newer-package", f"{name}={_NO_CUT_OFF}"]
    return options, extra_requirements
