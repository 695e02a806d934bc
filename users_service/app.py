"""Application factory: `create_app(settings)` wires config, database, migrations and routes.

A factory rather than a module-level app so tests can build as many instances as they like with
different settings, and importing the package never needs an environment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from users_service import api
from users_service.config import Settings
from users_service.db import DATABASE_ERRORS, describe_db_error, make_engine, make_sessionmaker
from users_service.limits import BodyLimitMiddleware
from users_service.logs import LOGGER_NAME, configure_logging
from users_service.migrate import upgrade_to_head
from users_service.security import ApiKeyMiddleware

log = logging.getLogger(LOGGER_NAME)

_MAX_ECHOED_INPUT = 200


class DatabaseStartupError(RuntimeError):
    """The database could not be migrated at start-up; the cause is in the ERROR line before."""


def _text(value: object) -> str:
    """`str(value)` that is always valid UTF-8 (a message may quote a lone surrogate)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _safe_error(error: Any) -> dict[str, Any]:
    """One pydantic error, in FastAPI's shape, but always encodable.

    FastAPI's default handler echoes `input` and `ctx` as they are; an input of `NaN`, raw
    non-UTF-8 bytes or a lone surrogate then crashes the JSON encoder and a 422 becomes a 500.
    We keep `input` only when it encodes as strict UTF-8 JSON and is short, and stringify `ctx`.
    """
    out: dict[str, Any] = {
        "type": _text(error.get("type", "")),
        "loc": [item if isinstance(item, int) else _text(item) for item in error.get("loc", ())],
        "msg": _text(error.get("msg", "")),
    }
    if "input" in error:
        try:  # the same encoding JSONResponse will do, so it cannot fail there
            encoded = json.dumps(error["input"], allow_nan=False, ensure_ascii=False)
            encoded.encode("utf-8")
        except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
            encoded = None
        if encoded is not None and len(encoded) <= _MAX_ECHOED_INPUT:
            out["input"] = error["input"]
    if error.get("ctx"):
        out["ctx"] = {_text(k): _text(v) for k, v in error["ctx"].items()}
    return out


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 tells the gateway to queue and retry, which is right when the database is down.

    Any driver error lands here: connection refused, database dropped, server restarting, pool
    exhausted. Input cannot cause one (validation and ON CONFLICT see to that), so what is left
    is the database's own trouble. Logged by class only: driver messages can quote parameters.
    """
    orig = getattr(exc, "orig", None)
    log.error(
        "database unavailable: %s%s",
        exc.__class__.__name__,
        f" ({orig.__class__.__name__})" if orig is not None else "",
    )
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


def create_app(settings: Settings) -> FastAPI:
    configure_logging(settings.log_level, settings.secret_values())
    url = settings.async_url
    safe_url = url.render_as_string(hide_password=True)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if api_key is None:
            log.warning(
                "API_KEY is not set: every /api route is open to anyone who can reach this"
                " port (read and write any user's data). Set API_KEY, and the gateway's"
                " USER_SERVICE_API_KEY to the same value, unless a trusted network guards it."
            )
        engine = make_engine(url)
        try:
            try:
                before, after = await upgrade_to_head(engine)
            except DATABASE_ERRORS as exc:
                # One readable line instead of a driver traceback (anything else, a bug in a
                # migration say, keeps its traceback); the handlers redact it either way.
                log.error("cannot use the database %s: %s", safe_url, describe_db_error(exc))
                raise DatabaseStartupError(f"cannot use the database {safe_url}") from None
            log.info(
                "users service ready: database=%s schema=%s->%s api_key=%s"
                " max_body_bytes=%d max_metadata_bytes=%d",
                safe_url,
                before,
                after,
                "required" if api_key else "not configured",
                settings.max_body_bytes,
                settings.max_metadata_bytes,
            )
            app.state.engine = engine
            app.state.sessionmaker = make_sessionmaker(engine)
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="User Service",
        version="1.0.0",
        summary="Users and their Telegram chat history, for the messaging gateway.",
        lifespan=lifespan,
    )
    app.state.api_key = api_key
    app.state.max_metadata_bytes = settings.max_metadata_bytes
    # The last added runs first: the key is checked before the body limit reads anything.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in DATABASE_ERRORS:
        app.add_exception_handler(exc_type, _database_unavailable)
    app.include_router(api.health_router)
    app.include_router(api.router)
    return app
