"""ASGI entry point: ``python -m uvicorn sandbox.main:app`` (settings from SANDBOX_* env)."""

from __future__ import annotations

from sandbox.app import create_app
from sandbox.config import SandboxConfig

app = create_app(SandboxConfig())
