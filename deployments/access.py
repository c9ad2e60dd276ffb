"""Who is asking: the user a client acts for and the providers they are a member of.

The embedded default has one local user, ``local``, a member of every provider. A shared server
maps tokens to users with a Prefect ``Secret`` block named ``qsflow-users`` holding
``{"<sha256 of the token>": {"user": "alice", "providers": ["acme"]}}`` (see the README). Inside
a job, the runner names the job's user and function (``QSFLOW_USER``, ``QSFLOW_FUNCTION``): the
program acts for that user and may reach its own function's provider files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Optional

LOCAL_USER = "local"
USERS_BLOCK = "qsflow-users"


class Forbidden(PermissionError):
    """The caller may not reach what it asked for."""


@dataclass(frozen=True)
class Principal:
    user: str
    providers: Optional[frozenset[str]] = None  # None: a member of every provider
    job_function: Optional[str] = None  # inside a job: the job's function, "provider/title"

    def can_reach_provider(self, provider: str, function_title: str) -> bool:
        if self.providers is None or provider in self.providers:
            return True
        return self.job_function == f"{provider}/{function_title}"

    def can_see_job(self, owner: str, function: str) -> bool:
        """A job is visible to its user and, for a provider function, to the provider's members."""
        if owner == self.user:
            return True
        provider = function.rpartition("/")[0]
        return bool(provider) and (self.providers is None or provider in self.providers)


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _users_table() -> Optional[dict]:
    from prefect.blocks.system import Secret

    try:
        return Secret.load(USERS_BLOCK).get()
    except ValueError:  # no such block: single-user mode
        return None


def resolve(token: Optional[str], how_to_pass: str = "ServerlessClient(host=..., token='...')") -> Principal:
    """The principal for a client created with ``token`` (under the current Prefect API settings);
    ``how_to_pass`` shows, in the error for a missing token, where the caller gives one."""
    if os.environ.get("QSFLOW_JOB_ID") and os.environ.get("QSFLOW_USER"):
        return Principal(user=os.environ["QSFLOW_USER"], providers=frozenset(),
                         job_function=os.environ.get("QSFLOW_FUNCTION") or None)
    table = _users_table()
    if table is None:
        return Principal(user=LOCAL_USER)
    if not token:
        raise Forbidden(
            f"This qsflow server maps tokens to users ({USERS_BLOCK!r} block): pass your token, "
            f"{how_to_pass}."
        )
    entry = table.get(token_key(token))
    if entry is None:
        raise Forbidden("The token given is not known to this qsflow server; ask its administrator for one.")
    return Principal(user=str(entry["user"]), providers=frozenset(entry.get("providers", [])))


def ibm_credentials_block(user: str) -> str:
    """Name of the Secret block holding ``user``'s IBM Quantum credentials."""
    slug = "".join(c if c.isalnum() else "-" for c in user.lower()).strip("-") or "user"
    return f"qsflow-ibm-quantum-{slug}"


def save_ibm_credentials(user: str, token: str, instance: Optional[str], channel: Optional[str]) -> None:
    """Keep an IBM Quantum token in a Prefect Secret block: never in parameters, logs or events."""
    import json

    from prefect.blocks.system import Secret

    # One JSON string, not a dict: Prefect's API obfuscates a string Secret's value when it is read without
    # include_secrets, but returns a dict value's members in clear text.
    credentials = json.dumps({"token": token, "instance": instance or "", "channel": channel or ""})
    Secret(value=credentials).save(ibm_credentials_block(user), overwrite=True)


def ibm_credentials_env(user: str) -> dict[str, str]:
    """``QISKIT_IBM_*`` variables for a job of ``user`` ({} when no credentials were saved)."""
    from prefect.blocks.system import Secret

    from blocks import prefetched

    import json

    try:
        value = prefetched.load(Secret, ibm_credentials_block(user)).get()
    except ValueError:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    env = {"QISKIT_IBM_TOKEN": value["token"]}
    if value.get("instance"):
        env["QISKIT_IBM_INSTANCE"] = value["instance"]
    if value.get("channel"):
        env["QISKIT_IBM_CHANNEL"] = value["channel"]
    return env
