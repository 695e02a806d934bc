"""The FastAPI application: `create_app(settings)` builds it, `app` serves it.

`python -m uvicorn app.main:app` reads configuration from the environment when it first looks
up `app`; invalid configuration stops the process there, with exit code 2 and a message naming
the variable. Tests call `create_app(Settings(...))` and never touch the environment.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings, load_settings_or_exit
from app.gateway import Gateway
from app.inbound.webhook import make_refusing_endpoint, make_webhook_endpoint
from app.logger import configure_logging
from app.routes import admin, delivery, files, health
from app.routes.guard import make_admin_guard

WEBHOOK_PATH = "/webhook/telegram"

#: uvicorn's connection limits for `messaging serve` (`python -m uvicorn` takes the same as
#: flags: `--timeout-keep-alive 5 --h11-max-incomplete-event-size 16384`). An idle kept-alive
#: connection is closed after 5 s; request headers are capped at 16 KiB, so a client sending
#: them slowly holds little memory (uvicorn has no deadline for headers: a reverse proxy's
#: header timeout covers that). The body has its own deadline, `WEBHOOK_BODY_TIMEOUT`, in the
#: webhook itself.
SERVER_OPTIONS: dict[str, Any] = {
    "timeout_keep_alive": 5,
    "h11_max_incomplete_event_size": 16 * 1024,
}


class GatewayApp(FastAPI):
    """FastAPI, with Telegram's webhook POSTs sent straight to their endpoint.

    The webhook is the one route under load, and it needs none of the middleware stack: its
    endpoint answers every input itself (403/413/400/200/503) and never raises for bad input.
    Skipping the stack and the route matching is worth ~10% of throughput (bench/webhook_ingest).
    """

    webhook_asgi: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.webhook_asgi is not None
            and scope["type"] == "http"
            and scope["path"] == WEBHOOK_PATH
            and scope["method"] == "POST"
        ):
            await self.webhook_asgi(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings_or_exit()
    configure_logging(settings.LOG_LEVEL, secrets=settings.secret_values())
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        gateway.install()
        # Everything imported and built so far lives as long as the process. Moving it out of
        # the collector's sight makes full collections cheap: without this, a gen-2 collection
        # scans ~100k long-lived objects and stalls every in-flight webhook for ~120 ms on a
        # small VM (measured: p99 131 ms under load; see bench/webhook_ingest.py).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gateway.uninstall()
            await gateway.stop()

    app = GatewayApp(
        title="Telegram messaging gateway",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's built-in OpenTelemetry hooks check the global providers on every request;
        # the gateway exports Prometheus metrics instead, and the webhook's hot path is lean.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = gateway
    app.state.settings = settings

    webhook = (
        make_webhook_endpoint(
            secret=settings.webhook_secret,
            max_body=settings.MAX_BODY_BYTES,
            body_timeout=settings.WEBHOOK_BODY_TIMEOUT,
            batcher=lambda: gateway.batcher if gateway.started else None,
            metrics=gateway.metrics,
        )
        if settings.ingests
        else make_refusing_endpoint(gateway.metrics)
    )
    # Registered as a route too (405 for other methods, listed with the app's routes), but
    # POSTs are served by the fast path in `GatewayApp.__call__`.
    app.add_route(WEBHOOK_PATH, webhook, methods=["POST"], include_in_schema=False)
    app.webhook_asgi = request_response(webhook)
    require_admin = make_admin_guard(settings.ADMIN_TOKEN)
    for routes in (health, admin, delivery, files):
        app.include_router(routes.router(gateway, require_admin))
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # `app` is built on first lookup (uvicorn's `app.main:app`), not at import time.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
