"""Qiskit Serverless's exceptions and its error-message shape."""

from __future__ import annotations

import json
from typing import Any, Optional


class QiskitServerlessException(Exception):
    """An error raised by the client, in Qiskit Serverless's message shape."""


class ServerlessError(Exception):
    """An error a program raises (or passes to ``send_error``) with a code and details."""

    def __init__(self, code: str, message: str, details: Any = None):
        self.code = code
        self.message = message
        self.details = details
        super().__init__(code, message, details)

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}"
        return f"{text}\n{self.details}" if self.details else text


_MESSAGES = {
    "AUTH1001": "Connection error. Make sure configuration (host and auth details) is correct.",
    "JSON1001": "Error occurred during decoding server json response.",
}


def format_err_msg(code: Any, details: Optional[str] = None) -> str:
    """``\\n| Message: ...\\n| Code: ...\\n| Details: ...`` as Qiskit Serverless formats it."""
    if isinstance(code, int) and 100 <= code < 600:
        message = "Http bad request."
    else:
        message = _MESSAGES.get(str(code), "Something went wrong.")
    text = f"\n| Message: {message}"
    if code:
        text += f"\n| Code: {code}"
    if details:
        text += "\n| Details:"
        try:
            parsed = json.loads(details)
        except (TypeError, ValueError):
            parsed = None
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                if value:
                    first = value[0] if isinstance(value, list) else value
                    text += f"\n|   - {key}: {first}"
        else:
            text += f" {details}"
    return text


def client_error(code: int, details: str) -> QiskitServerlessException:
    return QiskitServerlessException(format_err_msg(code, details))


def format_err_event(data: dict[str, Any]) -> str:
    """An error event as Qiskit Serverless shows it: message, code, exception, then details."""
    text = f"\n| Message: {data.get('message')}\n| Code: {data.get('code')}\n| Exception: {data.get('exception')}"
    args = data.get("args")
    if args:
        text += "\n| Details:"
        if isinstance(args, dict):
            for key, value in args.items():
                text += f"\n|   - {key}: {value}"
        else:
            text += f" {args}"
    return text
