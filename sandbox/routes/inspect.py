"""Reading back what happened: info, the update queue, deliveries, callback answers, the bot's
commands, files; the raw update injector and reset."""

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
                "worker_restarts": sandbox.webhook_worker_restarts,
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

    return r
