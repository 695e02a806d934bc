"""Logging set-up, and the guarantee that no secret reaches a log line.

SQLAlchemy masks the password in `repr(engine.url)`, but that is the only place it is careful:
driver exceptions, tracebacks (uvicorn logs one when the start-up fails) and server messages say
whatever they say. So instead of trusting each call site, one `logging.Filter` sits on every
handler in the process (ours, uvicorn's, the root's, logging's last-resort handler) and replaces
each configured secret, the database password and the API key, with `***` in the message, its
arguments and the formatted traceback. A record without a secret passes unchanged.

Lines are JSON in the format every service of the project shares (`jsonlog`: `time`,
`level`, `logger`, a stable `event`, `message`, fields), so `messaging dev` writes one format;
the JSON formatter redacts the finished line too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jsonlog

LOGGER_NAME = "users_service"
# Shorter values would garble ordinary words and are not credible secrets.
MIN_SECRET_LENGTH = 4
MASK = "***"

_PLAIN = (int, float, bool, type(None))


class SecretRedactor(logging.Filter):
    """Rewrites records that contain a known secret; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole. Kept across calls:
        # tests build several apps in one process and each one's secrets stay secret.
        found = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH} | set(self.secrets)
        self.secrets = tuple(sorted(found, key=len, reverse=True))

    def contains_secret(self, text: str) -> bool:
        return any(secret in text for secret in self.secrets)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def _arg(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, _PLAIN):
            return value
        text = str(value)
        return self.redact(text) if self.contains_secret(text) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        # Arguments one by one, so the record keeps its shape: uvicorn's access formatter
        # unpacks `record.args` as a tuple.
        if isinstance(record.args, tuple):
            record.args = tuple(self._arg(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: self._arg(arg) for key, arg in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        elif self.contains_secret(str(record.msg)):
            record.msg = self.redact(str(record.msg))
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it, without our help
            message = ""
        if self.contains_secret(message):  # e.g. a secret split across msg and an argument
            record.msg, record.args = self.redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if self.contains_secret(text):
                # Cached where every Formatter looks first, and the live exception dropped so
                # that no handler formats it afresh.
                record.exc_text, record.exc_info = text, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


redactor = SecretRedactor()
#: The same secrets, for the JSON formatter's last pass over each rendered line.
line_redactor = jsonlog.Redactor()


def _all_handlers() -> Iterator[logging.Handler]:
    yield from logging.getLogger().handlers
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield from logger.handlers
    if logging.lastResort is not None:
        yield logging.lastResort


def configure_logging(level: str, secrets: Iterable[str]) -> logging.Logger:
    """JSON lines on the root logger at `level`, and the redactor on every handler there is.

    Called from `create_app`, which runs after uvicorn has installed its handlers, so theirs
    are covered too (they are routed to the root handler).
    """
    secrets = list(secrets)
    redactor.update(secrets)
    line_redactor.update(secrets)
    jsonlog.install(level.upper(), line_redactor)
    log = logging.getLogger(LOGGER_NAME)
    log.setLevel(level.upper())
    for handler in _all_handlers():
        if redactor not in handler.filters:
            handler.addFilter(redactor)
    return log
