"""``get_logger`` and ``get_provider_logger``: program loggers whose lines the runner sorts.

Each record is written to stderr as ``[PUBLIC] LEVEL: message`` (user logger) or
``[PRIVATE] LEVEL: message`` (provider logger), one prefixed line per line of a multi-line message.
The runner strips the prefix: public lines go to ``job.logs()``; for a provider function, private
lines go only to ``job.provider_logs()`` (for a user's own function, to ``job.logs()`` as well).
"""

from __future__ import annotations

import logging
import sys

PUBLIC = "[PUBLIC]"
PRIVATE = "[PRIVATE]"


class _PrefixedLines(logging.Formatter):
    def __init__(self, prefix: str):
        super().__init__("%(levelname)s: %(message)s")
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        return "\n".join(f"{self.prefix} {record.levelname}: {line}" for line in message.split("\n"))


def _logger(name: str, prefix: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(getattr(h, "_qsflow", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PrefixedLines(prefix))
        handler._qsflow = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    """The program's user logger: its lines are in ``job.logs()``."""
    return _logger("user", PUBLIC)


def get_provider_logger() -> logging.Logger:
    """The provider's logger: for a provider function its lines reach only ``job.provider_logs()``."""
    return _logger("provider", PRIVATE)
