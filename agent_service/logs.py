"""JSON log lines, one object per line, with secrets redacted from every rendered line.

The service keeps its own small copy of the gateway's scheme (`app/logger.py`) instead of
importing it: it stands for a service a team deploys on its own, and must not break when the
gateway's internals change. uvicorn's and httpx's stdlib loggers end up in the same stream.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog

_HANDLER_NAME = "agent-service-json"


class Redactor:
    """Replaces configured secret values with `***` (longest first, so none leaks in part)."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def update(self, secrets: Iterable[str | None]) -> None:
        found = {s for s in secrets if s and len(s) >= 4} | set(self.secrets)
        self.secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


redactor = Redactor()


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redactor(super().format(record))


def _rename_event(_: Any, __: str, event_dict: Any) -> Any:
    event_dict["message"] = event_dict.pop("event", "")
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    return event_dict


def _formatter() -> logging.Formatter:
    return JsonFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _rename_event,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )


def configure_logging(level: str, secrets: Iterable[str | None] = ()) -> None:
    """Install the JSON handler on the root logger; idempotent (later calls update level and
    secrets). httpx logs each request URL at INFO, so it is quiet unless LOG_LEVEL=DEBUG."""
    redactor.update(secrets)
    root = logging.getLogger()
    root.setLevel(level)
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_formatter())
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers = []
            logging.getLogger(name).propagate = True
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
