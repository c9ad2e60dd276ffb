"""How a client authenticates to a Prefect API that requires it.

A self-hosted Prefect server started with ``PREFECT_SERVER_API_AUTH_STRING="user:password"``
answers 401 to every API call without that string as HTTP basic auth; Prefect's clients send it
when ``PREFECT_API_AUTH_STRING`` is set (Prefect Cloud takes ``PREFECT_API_KEY`` instead). A
qsflow client uses Prefect's own settings first; when the server refuses them (or they hold
nothing), the ``token`` given to ``ServerlessClient(host=..., token=...)`` is tried as the auth
string. Anything else is refused with one error naming the setting.
"""

from __future__ import annotations

import base64
from typing import Optional

import httpx

# Any API route behind the server's auth check will do; the health check is open to everyone.
_PROBE_PATH = "/admin/version"


class AuthenticationRequired(PermissionError):
    """The Prefect API wants credentials the client does not have."""


def basic_auth_header(auth_string: str) -> dict[str, str]:
    """The Authorization header Prefect's clients send for ``auth_string``."""
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def configured_headers() -> dict[str, str]:
    """The Authorization header for the credentials in Prefect's settings (auth string, else API key), or none."""
    auth_string, key = _configured()
    if auth_string:
        return basic_auth_header(auth_string)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _configured() -> tuple[Optional[str], Optional[str]]:
    """Prefect's own credentials for the API: (auth string, API key), from the environment or profile."""
    from prefect.settings import get_current_settings  # here: programs use this module without loading Prefect

    api = get_current_settings().api
    auth_string = api.auth_string.get_secret_value() if api.auth_string else None
    key = api.key.get_secret_value() if api.key else None
    return auth_string or None, key or None


def _accepted(url: str, headers: dict[str, str], timeout: float) -> bool:
    response = httpx.get(f"{url.rstrip('/')}{_PROBE_PATH}", headers=headers, timeout=timeout)
    return response.status_code not in (401, 403)


def auth_string_for(url: str, token: Optional[str], timeout: float = 10.0) -> Optional[str]:
    """The auth string the client must add to Prefect's settings for ``url``.

    None when the server asks for no credentials or accepts the ones in Prefect's settings;
    ``token`` when the server requires basic auth and accepts the token as its auth string.
    Raises :class:`AuthenticationRequired` otherwise.
    """
    auth_string, key = _configured()
    if auth_string:
        headers, setting = basic_auth_header(auth_string), "PREFECT_API_AUTH_STRING"  # Prefect prefers it
    elif key:
        headers, setting = {"Authorization": f"Bearer {key}"}, "PREFECT_API_KEY"
    else:
        headers, setting = {}, None
    if _accepted(url, headers, timeout):
        return None
    if token and _accepted(url, basic_auth_header(token), timeout):
        return token
    if setting:
        refused = f"refused the credentials in {setting}" + (" and the token given" if token else "")
    else:
        refused = "refused the token given as its auth string" if token else "requires authentication"
    raise AuthenticationRequired(
        f"The Prefect server at {url} {refused}. Set PREFECT_API_AUTH_STRING to the server's "
        "PREFECT_SERVER_API_AUTH_STRING ('user:password'; in the environment or with `prefect config "
        "set`), or pass it as ServerlessClient(host=..., token='user:password'). For Prefect Cloud "
        "set PREFECT_API_KEY."
    )
