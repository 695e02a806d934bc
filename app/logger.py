"""Logs as data: one JSON object per line, with the update being handled attached to each line.

`get_logger(name)` returns a plain `logging.Logger` (the original API), so any library that logs
through stdlib logging (httpx, uvicorn, SQLAlchemy) ends up in the same JSON stream. structlog's
`ProcessorFormatter` does the rendering; `correlation_id` comes from a context variable that the
pipeline binds while it handles an update (`bind_correlation`), so asyncio tasks inherit it.

Secrets never reach the output: every rendered line passes through `Redactor`, which replaces
the configured secret values and anything shaped like a bot token in a URL (httpx logs request
URLs, and Telegram's URLs carry the token in their path).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import structlog

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

_TOKEN_IN_URL = re.compile(r"bot[0-9]{1,20}:[A-Za-z0-9_-]+")
_TOKEN_BARE = re.compile(r"\b[0-9]{6,20}:[A-Za-z0-9_-]{30,}\b")


class Redactor:
    """Replaces known secret values and token-shaped strings with `***`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str | None]) -> None:
        # Longest first, so a secret that contains another is replaced whole; very short values
        # would garble ordinary text and are not plausible secrets.
        found = {s for s in secrets if s and len(s) >= 4} | set(self.secrets)
        self.secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        text = _TOKEN_IN_URL.sub("bot***", text)
        return _TOKEN_BARE.sub("***", text)


redactor = Redactor()


def _add_correlation(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    cid = correlation_id.get()
    if cid is not None and "correlation_id" not in event_dict:
        event_dict["correlation_id"] = cid
    return event_dict


def _rename_event(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["message"] = event_dict.pop("event", "")
    return event_dict


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's stdlib formatter, plus redaction of the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redactor(super().format(record))


def build_formatter() -> logging.Formatter:
    pre_chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        structlog.stdlib.ExtraAdder(),
        _add_correlation,
    ]
    return JsonFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _rename_event,
            structlog.processors.JSONRenderer(sort_keys=False, ensure_ascii=False),
        ],
    )


_configured = False


def configure_logging(level: str = "INFO", secrets: Iterable[str | None] = ()) -> None:
    """Install the JSON handler on the root logger (idempotent; later calls update level/secrets)."""
    global _configured
    redactor.update(secrets)
    root = logging.getLogger()
    root.setLevel(level)
    if not _configured:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(build_formatter())
        handler.set_name("messaging-json")
        root.handlers = [h for h in root.handlers if h.get_name() != "messaging-json"]
        root.addHandler(handler)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            lg = logging.getLogger(name)
            lg.handlers = []
            lg.propagate = True
        _configured = True
    # httpx logs every request at INFO with its URL; keep that for DEBUG runs only.
    quiet = logging.WARNING if level != "DEBUG" else logging.DEBUG
    for name in ("httpx", "httpcore", "aiosqlite", "asyncio"):
        logging.getLogger(name).setLevel(max(quiet, logging.getLogger().level))


def get_logger(name: str) -> logging.Logger:
    """A stdlib logger whose records are rendered as JSON by the root handler.

    Level comes from the root logger (set from `LOG_LEVEL` by `configure_logging`). If nothing
    configured logging yet (a script importing one module), install the JSON handler at INFO.
    """
    if not _configured:
        configure_logging(logging.getLevelName(logging.getLogger().level) or "INFO")
    return logging.getLogger(name)


@contextlib.contextmanager
def bind_correlation(value: object) -> Iterator[None]:
    """Attach `correlation_id` to every line logged inside the block (and tasks it starts)."""
    token = correlation_id.set(str(value))
    try:
        yield
    finally:
        correlation_id.reset(token)
