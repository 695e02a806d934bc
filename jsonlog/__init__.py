"""Logs as data, the same way in every service of the project: one JSON object per line.

The gateway, the User Service and the Agent Service are separate deployables, but one person
reads their logs side by side (`messaging dev` writes all three), so they share this format:

    {"time": "...Z", "level": "info", "logger": "app.processing.dispatcher",
     "event": "update_processed", "message": "update processed", "correlation_id": "9001", ...}

- `event` is stable: given by the call site (`extra={"event": "update_processed"}`) or derived
  from the message's format string (`"telegram call failed"` -> `telegram_call_failed`, with
  `%s` placeholders dropped), so it is the same for every line a call site writes, whatever
  values it carries. `message` is the human text.
- Context bound with `structlog.contextvars` (the update being handled) is on every line,
  including those of libraries logging through stdlib `logging` (httpx, uvicorn, SQLAlchemy).
- Every rendered line passes through a `Redactor`: configured secret values, passwords in URLs
  (`scheme://user:password@host`) and bot tokens (`bot123:ABC...`) become `***`.
- uvicorn's `color_message` (the same text with ANSI escapes) is dropped.

structlog's `ProcessorFormatter` does the rendering; each service calls `install` once.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote

import structlog

HANDLER_NAME = "jsonlog"
MASK = "***"
#: Shorter values would garble ordinary text and are not plausible secrets.
MIN_SECRET_LENGTH = 4
FIRST_KEYS = ("time", "level", "logger", "event", "message", "correlation_id")

_TOKEN_IN_URL = re.compile(r"bot[0-9]{1,20}:[A-Za-z0-9_-]+")
_TOKEN_BARE = re.compile(r"\b[0-9]{6,20}:[A-Za-z0-9_-]{30,}\b")
#: `scheme://user:password@`; the password runs to the *last* `@` before the path, as URL
#: parsers read it: an unencoded `@` inside a password must not leave its second half shown.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^\s/]+)@")
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z%]")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


class Redactor:
    """Replaces secrets in rendered text (see the module docstring). Secrets accumulate:
    several apps built in one process (tests) each keep theirs secret."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str | None]) -> None:
        found = set(self.secrets)
        for value in secrets:
            if not value:
                continue
            for candidate in (value, *url_passwords(value)):
                if len(candidate) >= MIN_SECRET_LENGTH:
                    found.add(candidate)
        self.secrets = sorted(found, key=len, reverse=True)  # a secret inside another: whole

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
        text = _TOKEN_IN_URL.sub("bot" + MASK, text)
        return _TOKEN_BARE.sub(MASK, text)


def url_passwords(value: str) -> list[str]:
    """The password of a URL-shaped value, raw and percent-decoded (both can be printed)."""
    match = _URL_PASSWORD.search(value)
    if match is None:
        return []
    raw = match.group("pw")
    return [raw, unquote(raw)]


def mask_url_password(value: str) -> str:
    """The URL with its password (if any) shown as `***`, for display."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", value)


def event_name(record: logging.LogRecord) -> str:
    """The stable name of a log call site: the `event` it gave, else its format string."""
    given = getattr(record, "event", None)
    if isinstance(given, str) and given:
        return given
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    words = _NOT_WORD.sub("_", _PLACEHOLDER.sub(" ", template).lower()).strip("_")
    return words[:60].rstrip("_") or "log"


def _event_and_message(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    event_dict["message"] = event_dict.pop("event", "")
    if isinstance(record, logging.LogRecord):
        event_dict["event"] = event_name(record)
        if record.exc_text and not record.exc_info:
            # A filter upstream cached a (redacted) traceback and dropped the live exception.
            event_dict["exception"] = record.exc_text
    return event_dict


def _tidy(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    first = {k: event_dict.pop(k) for k in FIRST_KEYS if k in event_dict}
    return {**first, **event_dict}


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's stdlib formatter, plus redaction of the finished line."""

    def __init__(self, redactor: Redactor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


def build_formatter(redactor: Redactor) -> logging.Formatter:
    return JsonFormatter(
        redactor,
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            _event_and_message,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _tidy,
            structlog.processors.JSONRenderer(sort_keys=False, ensure_ascii=False),
        ],
    )


def install(
    level: str,
    redactor: Redactor,
    *,
    quiet: Iterable[str] = ("httpx", "httpcore", "aiosqlite", "asyncio"),
) -> None:
    """The JSON handler on the root logger, uvicorn's loggers routed to it; idempotent (a
    second call updates the level). `quiet` loggers speak at WARNING unless level is DEBUG
    (httpx logs every request URL at INFO)."""
    root = logging.getLogger()
    root.setLevel(level)
    handlers = [h for h in root.handlers if h.get_name() != HANDLER_NAME]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(build_formatter(redactor))
    handler.set_name(HANDLER_NAME)
    root.handlers = [*handlers, handler]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    floor = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in quiet:
        logging.getLogger(name).setLevel(max(floor, root.level))


__all__ = [
    "JsonFormatter",
    "Redactor",
    "build_formatter",
    "event_name",
    "install",
    "mask_url_password",
    "url_passwords",
]
