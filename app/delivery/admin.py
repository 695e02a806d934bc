"""Admin endpoints of the delivery engine: see what was not delivered, and send it again."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query

if TYPE_CHECKING:
    from app.delivery.engine import Delivery


def build_router(delivery: Delivery, require_admin: Callable[..., Any]) -> APIRouter:
    """`GET /admin/delivery/parked`, `POST /admin/delivery/resend/{ref}`,
    `POST /admin/delivery/chats/{chat_id}/active`; every route depends on `require_admin`."""
    router = APIRouter(prefix="/admin/delivery", dependencies=[Depends(require_admin)])

    @router.get("/parked")
    async def parked(limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        items = await delivery.list_parked(limit)
        return {"count": len(items), "items": items}

    @router.post("/resend/{ref}")
    async def resend(ref: str) -> dict[str, Any]:
        """`ref`: a job id (`12` or `job:12`), a part id (`part:34`) or a job key."""
        if not await delivery.resend(ref):
            raise HTTPException(404, "nothing parked or failed under that reference")
        return {"ok": True, "resent": ref}

    @router.post("/chats/{chat_id}/active")
    async def active(chat_id: int) -> dict[str, Any]:
        await delivery.mark_active(chat_id)
        return {"ok": True, "chat_id": chat_id}

    return router
