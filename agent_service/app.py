"""Application factory: `create_app(settings)` picks the backend and wires the routes.

A factory, not a module-level app, so tests build as many instances as they like with
different settings (and a stand-in transport), and importing the package needs no environment.
The backend is started in the lifespan: for `local` that is where the llama.cpp server child
is spawned and awaited, so the service is not "up" before its model is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from agent_service import api
from agent_service.backends.base import Backend
from agent_service.backends.demo import DemoBackend
from agent_service.backends.local import LocalBackend
from agent_service.backends.openai_compat import OpenAIBackend, UpstreamConfig
from agent_service.config import Settings, redact_url
from agent_service.logs import configure_logging
from agent_service.security import ApiKeyMiddleware

log = logging.getLogger("agent_service")

_MAX_ECHOED_INPUT = 200


def upstream_config(settings: Settings, **overrides: Any) -> UpstreamConfig:
    values: dict[str, Any] = {
        "base_url": settings.OPENAI_BASE_URL,
        "api_key": settings.OPENAI_API_KEY.get_secret_value() if settings.OPENAI_API_KEY else None,
        "model": settings.AGENT_MODEL,
        "system_prompt": settings.AGENT_SYSTEM_PROMPT,
        "temperature": settings.AGENT_TEMPERATURE,
        "max_tokens": settings.AGENT_MAX_TOKENS,
        "history_budget": settings.AGENT_HISTORY_BUDGET,
        "tools": settings.AGENT_TOOLS,
        "timeout": settings.AGENT_UPSTREAM_TIMEOUT,
        "extra_body": settings.AGENT_EXTRA_BODY,
    }
    return UpstreamConfig(**{**values, **overrides})


def make_backend(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> Backend:
    if settings.AGENT_BACKEND == "openai":
        return OpenAIBackend(upstream_config(settings), transport=transport)
    if settings.AGENT_BACKEND == "local":
        return LocalBackend(settings, upstream_config(settings))
    return DemoBackend(delay=settings.AGENT_DEMO_DELAY)


def _text(value: object) -> str:
    """`str(value)` that is always valid UTF-8 (an input may hold a lone surrogate)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _safe_error(error: Any) -> dict[str, Any]:
    """One pydantic error in FastAPI's shape, always encodable (see users_service.app)."""
    out: dict[str, Any] = {
        "type": _text(error.get("type", "")),
        "loc": [item if isinstance(item, int) else _text(item) for item in error.get("loc", ())],
        "msg": _text(error.get("msg", "")),
    }
    if "input" in error:
        try:
            encoded = json.dumps(error["input"], allow_nan=False, ensure_ascii=False)
            encoded.encode("utf-8")
        except (TypeError, ValueError):
            encoded = None
        if encoded is not None and len(encoded) <= _MAX_ECHOED_INPUT:
            out["input"] = error["input"]
    return out


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)


def _describe(settings: Settings, backend: Backend) -> dict[str, Any]:
    """What the start-up line says: enough to see what runs, no secret."""
    facts: dict[str, Any] = {"backend": backend.name, "timeout": settings.AGENT_UPSTREAM_TIMEOUT}
    if isinstance(backend, OpenAIBackend):
        facts |= {
            "base_url": redact_url(backend.config.base_url),
            "model": backend.config.model,
            "api_key": "set" if backend.config.api_key else "not set",
            "tools": backend.config.tools,
        }
    if isinstance(backend, LocalBackend) and backend.server is not None:
        facts |= {"model": backend.server.model_path.name, "base_url": backend.server.base_url}
    return facts


def create_app(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The service; `transport` replaces the network under the `openai` backend (tests)."""
    configure_logging(settings.LOG_LEVEL, secrets=settings.secrets())
    api_key = (
        settings.AGENT_SERVICE_API_KEY.get_secret_value()
        if settings.AGENT_SERVICE_API_KEY
        else None
    )
    backend = make_backend(settings, transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        try:
            if api_key is None:
                log.warning(
                    "AGENT_SERVICE_API_KEY is not set: /api/respond answers any caller;"
                    " set it here and in the gateway when the port is reachable by others"
                )
            log.info("agent service ready", extra=_describe(settings, backend))
            yield
        finally:
            for task in list(app.state.turns):
                task.cancel()
            await backend.close()

    app = FastAPI(
        title="Agent Service",
        version="1.0.0",
        summary="Answers the messaging gateway's turns with a model: JSON or Server-Sent Events.",
        lifespan=lifespan,
        max_body_size=settings.AGENT_MAX_BODY_BYTES,
    )
    app.state.api_key = api_key
    app.state.backend = backend
    app.state.timeout = settings.AGENT_UPSTREAM_TIMEOUT
    app.state.turns = set[asyncio.Task[None]]()
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(api.health_router)
    app.include_router(api.router)
    return app
