"""Operator endpoints, behind `X-Admin-Token`.

Without `ADMIN_TOKEN` configured the admin API is disabled (403), so a deployment that forgot
to set one is closed rather than open. A missing header is 401, a wrong one 403; the compare is
constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException

from app.runtime import Gateway


def make_admin_guard(admin_token: str | None) -> Callable[..., None]:
    expected = admin_token.encode() if admin_token else None

    def require_admin(x_admin_token: str | None = Header(default=None)) -> None:
        if expected is None:
            raise HTTPException(403, "admin API disabled: set ADMIN_TOKEN to enable it")
        if not x_admin_token:
            raise HTTPException(401, "missing X-Admin-Token header")
        if not hmac.compare_digest(x_admin_token.encode(), expected):
            raise HTTPException(403, "invalid admin token")

    return require_admin


def make_router(gateway: Callable[[], Gateway], require_admin: Callable[..., None]) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.post("/flush-retries")
    async def flush_retries() -> dict[str, int]:
        """Replay queued history writes now (back-off timers are skipped)."""
        queue = gateway().retry_queue
        await queue.make_all_due()
        flushed = await queue.flush()
        return {"flushed": flushed, "remaining": await queue.size()}

    @router.get("/retry-queue")
    async def retry_queue(limit: int = 100) -> dict[str, Any]:
        queue = gateway().retry_queue
        return {"size": await queue.size(), "items": await queue.list(min(max(limit, 1), 1000))}

    @router.get("/dead")
    async def dead_updates(limit: int = 100) -> dict[str, Any]:
        """Updates set aside after repeated failures (kept for a human to look at)."""
        items = await gateway().inbox.list_by_state("dead", min(max(limit, 1), 1000))
        return {"count": len(items), "items": items}

    @router.post("/dead/{update_id}/retry")
    async def retry_dead(update_id: int) -> dict[str, Any]:
        gw = gateway()
        if not await gw.inbox.requeue(update_id):
            raise HTTPException(404, "no dead update with that update_id")
        gw.dispatcher.wake()
        return {"requeued": update_id}

    @router.get("/inbox")
    async def inbox_stats() -> dict[str, Any]:
        gw = gateway()
        return {"counts": await gw.inbox.counts(), "in_flight": gw.dispatcher.in_flight}

    return router
