"""`uvicorn agent_service.main:app` entry point.

`app` is built on first access (module `__getattr__`), so importing this module needs no
environment, and bad configuration stops the server at start with exit code 2 and a message
naming the variable.
"""

from __future__ import annotations

from fastapi import FastAPI

from agent_service.app import create_app
from agent_service.config import load_settings_or_exit

_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app(load_settings_or_exit())
    return _app
