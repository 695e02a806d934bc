"""JSON log lines, one object per line, with secrets redacted from every rendered line.

The format every service of the project shares (`jsonlog`: `time`, `level`, `logger`, a stable
`event`, `message`, then the fields), so `messaging dev` writes one format for all of them.
uvicorn's and httpx's stdlib loggers end up in the same stream; httpx is quiet unless
LOG_LEVEL=DEBUG (it logs every request URL at INFO).
"""

from __future__ import annotations

from collections.abc import Iterable

import jsonlog

redactor = jsonlog.Redactor()


def configure_logging(level: str, secrets: Iterable[str | None] = ()) -> None:
    """Install the JSON handler on the root logger; later calls update level and secrets."""
    redactor.update(secrets)
    jsonlog.install(level, redactor)
