"""Liveness, readiness and metrics.

`/health` answers 200 while the process can answer at all (for a liveness probe: restarting
would not help otherwise). `/ready` answers 200 only when the gateway's own database is
reachable, because without it the webhook can only answer 503.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.runtime import Gateway


def make_router(gateway: Callable[[], Gateway | None]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        gw = gateway()
        if gw is not None and await gw.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @router.get("/metrics")
    async def metrics() -> Response:
        gw = gateway()
        if gw is None:
            return Response(status_code=503)
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
