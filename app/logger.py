"""Logs as data: one JSON object per line, with the update being handled on each line.

`get_logger(name)` returns a plain `logging.Logger` (the original API), so any library that logs
through stdlib logging (httpx, uvicorn, SQLAlchemy) ends up in the same JSON stream, in the
format every service of the project shares (`jsonlog`: `time`, `level`, `logger`, a stable
`event`, `message`, then the fields). `correlation_id` is bound with structlog's contextvars
while an update is handled (`bind_correlation`), so asyncio tasks started inside inherit it.

Secrets never reach the output: every rendered line passes through `redactor`, fed with the
values of `Settings.secret_values()` (tokens, keys, passwords in URLs) and anything shaped like
a bot token in a URL (httpx logs request URLs, and Telegram's carry the token in their path).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import structlog

import jsonlog

redactor = jsonlog.Redactor()
Redactor = jsonlog.Redactor
_configured = False


def build_formatter() -> logging.Formatter:
    """The JSON formatter, redacting with this process's `redactor`."""
    return jsonlog.build_formatter(redactor)


def configure_logging(level: str = "INFO", secrets: Iterable[str | None] = ()) -> None:
    """Install the JSON handler on the root logger (later calls update level and secrets)."""
    global _configured
    redactor.update(secrets)
    jsonlog.install(level, redactor)
    _configured = True


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
    with structlog.contextvars.bound_contextvars(correlation_id=str(value)):
        yield
