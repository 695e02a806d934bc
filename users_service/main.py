"""`uvicorn users_service.main:app` entry point.

`app` is built on first access (module `__getattr__`), so importing this module needs no
environment and a bad `DATABASE_URL` is reported when the server starts: one line per bad
variable on stderr, never its value, and exit code 2 (uvicorn lets `SystemExit` through).
"""

from __future__ import annotations

from fastapi import FastAPI

from users_service.app import create_app
from users_service.config import load_settings_or_exit

_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app(load_settings_or_exit())
    return _app
