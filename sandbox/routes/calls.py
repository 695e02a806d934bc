"""The recorded Bot API calls (secrets masked) and counts over them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.state import Sandbox


def build_router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter()

    @r.get("/calls")
    async def calls(method: str | None = None, status: int | None = None) -> list[dict[str, Any]]:
        out = sandbox.calls
        if method:
            out = [c for c in out if c.method.lower() == method.lower()]
        if status is not None:
            out = [c for c in out if c.status == status]
        return [c.to_json() for c in out]

    @r.delete("/calls")
    async def clear_calls() -> dict[str, bool]:
        sandbox.calls.clear()
        sandbox.flood_refusals = 0
        return {"ok": True}

    @r.get("/stats")
    async def stats() -> dict[str, Any]:
        return _stats(sandbox)

    return r


def _stats(sandbox: Sandbox) -> dict[str, Any]:
    by_method: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for c in sandbox.calls:
        by_method[c.method] = by_method.get(c.method, 0) + 1
        by_status[str(c.status)] = by_status.get(str(c.status), 0) + 1
    return {
        "calls": len(sandbox.calls),
        "by_method": by_method,
        "by_status": by_status,
        "flood_429": sandbox.flood_refusals,
        "deliveries": len(sandbox.deliveries),
        "pending_updates": len(sandbox.pending),
        "filtered_updates": len(sandbox.filtered),
    }
