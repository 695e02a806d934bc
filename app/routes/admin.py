"""Operator endpoints for the inbox and the retry queue, behind `X-Admin-Token`.

Path and query values are validated by FastAPI (an id outside 0..2^63-1 is a 422, never a
500), and stored payloads are shown as stored, whatever they hold.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from app.gateway import Gateway
from app.routes.guard import AdminGuard
from app.storage.states import InboxState, RetryState

MAX_ID = 2**63 - 1
Limit = Annotated[int, Query(ge=1, le=1000)]
RowId = Annotated[int, Path(ge=0, le=MAX_ID)]


def router(gateway: Gateway, require_admin: AdminGuard) -> APIRouter:
    r = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
    queue, inbox = gateway.retry_queue, gateway.inbox

    @r.post("/flush-retries")
    async def flush_retries() -> dict[str, int]:
        """Replay queued history writes now (back-off timers are skipped)."""
        await queue.make_all_due()
        flushed = await queue.flush()
        return {"flushed": flushed, "remaining": await queue.size()}

    @r.get("/retry-queue")
    async def retry_queue(limit: Limit = 100) -> dict[str, Any]:
        """Queued history writes: waiting ones, and dead ones (refused for good)."""
        return {
            "size": await queue.size(),
            "dead": await queue.size(RetryState.DEAD),
            "items": await queue.list(limit),
        }

    @r.post("/retry-queue/{row_id}/retry")
    async def retry_dead_write(row_id: RowId) -> dict[str, Any]:
        if not await queue.requeue(row_id):
            raise HTTPException(404, "no dead history write with that id")
        return {"requeued": row_id}

    @r.get("/dead")
    async def dead_updates(limit: Limit = 100) -> dict[str, Any]:
        """Updates set aside after repeated failures (kept for a human to look at)."""
        items = await inbox.list_by_state(InboxState.DEAD, limit)
        return {"count": len(items), "items": items}

    @r.post("/dead/{update_id}/retry")
    async def retry_dead(update_id: RowId) -> dict[str, Any]:
        if not await inbox.requeue(update_id):
            raise HTTPException(404, "no dead update with that update_id")
        gateway.dispatcher.wake()
        return {"requeued": update_id}

    @r.get("/inbox")
    async def inbox_stats() -> dict[str, Any]:
        return {"counts": await inbox.counts(), "in_flight": gateway.dispatcher.in_flight}

    return r
