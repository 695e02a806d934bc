"""Admin endpoints of the delivery engine: see what was not delivered, and send it again."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from app.gateway import Gateway
from app.routes.guard import AdminGuard

ChatId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1)]


def router(gateway: Gateway, require_admin: AdminGuard) -> APIRouter:
    """`GET /admin/delivery/parked`, `POST /admin/delivery/resend/{ref}`,
    `POST /admin/delivery/chats/{chat_id}/active`; every route depends on `require_admin`."""
    r = APIRouter(prefix="/admin/delivery", tags=["admin"], dependencies=[Depends(require_admin)])
    delivery = gateway.delivery

    @r.get("/parked")
    async def parked(limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        items = await delivery.list_parked(limit)
        return {"count": len(items), "items": items}

    @r.post("/resend/{ref}")
    async def resend(ref: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
        """`ref`: a job id (`12` or `job:12`), a part id (`part:34`) or a job key."""
        if not await delivery.resend(ref):
            raise HTTPException(404, "nothing parked or failed under that reference")
        return {"ok": True, "resent": ref}

    @r.post("/chats/{chat_id}/active")
    async def active(chat_id: ChatId) -> dict[str, Any]:
        await delivery.mark_active(chat_id)
        return {"ok": True, "chat_id": chat_id}

    return r
