"""Reading back what happened: info, the update queue, deliveries, recorded calls, stats, the
bot's commands, files; and the raw update injector."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from sandbox.spec_additions import VERSION_NOTE
from sandbox.state import Sandbox


def build_router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter()

    @r.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "bot": sandbox.bot_user(),
            "token": sandbox.config.bot_token,
            "spec_version": VERSION_NOTE,
            "webhook": {
                "url": sandbox.webhook.url,
                "secret_set": bool(sandbox.webhook.secret_token),
            },
            "allowed_updates": sandbox.allowed_updates,
            "draft_ttl": sandbox.config.draft_ttl,
            "pending_updates": len(sandbox.pending),
        }

    @r.post("/reset")
    async def reset() -> dict[str, bool]:
        sandbox.reset()
        return {"ok": True}

    @r.post("/updates")
    async def deliver_raw(request: Request, apply_allowed_updates: bool = False) -> dict[str, Any]:
        update = await request.json()
        if not isinstance(update, dict):
            raise HTTPException(422, "an Update must be a JSON object")
        sandbox.enqueue(update, raw=True, filtered=apply_allowed_updates)
        return {"queued": update not in sandbox.filtered, "update_id": update.get("update_id")}

    @r.get("/updates/pending")
    async def pending() -> list[dict[str, Any]]:
        return list(sandbox.pending)

    @r.get("/updates/filtered")
    async def filtered() -> list[dict[str, Any]]:
        """Updates not delivered because the bot's allowed_updates excludes their kind."""
        return sandbox.filtered

    @r.get("/deliveries")
    async def deliveries() -> list[dict[str, Any]]:
        return sandbox.deliveries

    @r.get("/callback-answers")
    async def callback_answers() -> list[dict[str, Any]]:
        return sandbox.callback_answers

    @r.get("/commands")
    async def commands() -> list[dict[str, Any]]:
        """What setMyCommands stored, per scope and language."""
        return [
            {"scope": scope, "language_code": lang, "commands": cmds}
            for (scope, lang), cmds in sandbox.commands.items()
        ]

    @r.get("/files")
    async def files() -> list[dict[str, Any]]:
        return [f.to_control() for f in sandbox.files.files.values()]

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
