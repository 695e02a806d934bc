"""Liveness, readiness and metrics.

`/health` answers 200 while the process can answer at all (for a liveness probe: restarting
would not help otherwise). `/ready` answers 200 only when the gateway's own database is
reachable, because without it the webhook can only answer 503.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.gateway import Gateway
from app.routes.guard import AdminGuard


def router(gateway: Gateway, require_admin: AdminGuard) -> APIRouter:
    """Open endpoints (`require_admin` is unused: probes and scrapers carry no token)."""
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        if await gateway.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
