"""Secret redaction: no configured secret, and no 8-character prefix of one, leaves the gateway.

Providers echo keys in their errors ("Incorrect API key provided: sk-abc12***wxyz"), and
exceptions can carry headers; both pass through here before reaching a client or a log.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable

MASK = "[redacted]"
_PREFIX = 8


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    # A secret's 8-character prefix and whatever key-like text follows it: covers the whole key
    # and the partly masked forms providers print.
    prefixes = sorted({s[:_PREFIX] for s in secrets if s and len(s) >= _PREFIX}, key=len, reverse=True)
    if not prefixes:
        return None
    return re.compile("(?:" + "|".join(re.escape(p) for p in prefixes) + r")[^\s\"',;]*")


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._pattern = _pattern(secrets)

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern else value

    def data(self, value: bytes) -> bytes:
        if self._pattern is None:
            return value
        return self.text(value.decode("utf-8", errors="replace")).encode("utf-8")


class RedactingFilter(logging.Filter):
    """Installed on the log handlers: rewrites every record's message before it is written."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = self.redactor.text(message), None
        return True


def install(redactor: Redactor) -> None:
    """Redact on every handler of the root logger (and so of every logger that propagates),
    replacing the filter a previous config installed."""
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactingFilter(redactor))
