"""Chats: groups with members, transcripts, a bot message's edit history, drafts and the stop
button on them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from sandbox.routes.models import GroupIn, StopIn
from sandbox.state import Chat, Sandbox


def chat_or_404(sandbox: Sandbox, chat_id: int) -> Chat:
    chat = sandbox.chats.get(chat_id)
    if chat is None:
        raise HTTPException(404, f"no chat {chat_id}")
    return chat


def build_router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter()

    @r.post("/groups")
    async def create_group(body: GroupIn) -> dict[str, Any]:
        unknown = [m for m in body.members if m not in sandbox.users]
        if unknown:
            raise HTTPException(404, f"no simulated users {unknown}")
        chat = sandbox.add_group(
            body.title, body.members, body.id, kind=body.type, username=body.username
        )
        return sandbox.chat_summary(chat)

    @r.get("/chats")
    async def chats() -> list[dict[str, Any]]:
        return [sandbox.chat_summary(c) for c in sandbox.chats.values()]

    @r.get("/chats/{chat_id}")
    async def chat(chat_id: int) -> dict[str, Any]:
        return sandbox.chat_summary(chat_or_404(sandbox, chat_id))

    @r.get("/chats/{chat_id}/messages")
    async def messages(chat_id: int) -> list[dict[str, Any]]:
        return chat_or_404(sandbox, chat_id).messages

    @r.get("/chats/{chat_id}/messages/{message_id}/history")
    async def history(chat_id: int, message_id: int) -> dict[str, Any]:
        """Every version of a message, the original first (only edited ones have more)."""
        c = chat_or_404(sandbox, chat_id)
        msg = c.find(message_id)
        if msg is None:
            raise HTTPException(404, f"no message {message_id} in chat {chat_id}")
        versions = c.history.get(message_id)
        if versions is None:
            keys = ("text", "entities", "caption", "caption_entities", "reply_markup", "date")
            versions = [{k: msg[k] for k in keys if k in msg}]
        return {"message": msg, "versions": versions, "edits": len(versions) - 1}

    @r.get("/chats/{chat_id}/drafts")
    async def drafts(chat_id: int) -> list[dict[str, Any]]:
        chat_or_404(sandbox, chat_id)
        return [d.to_json() for d in sandbox.drafts.for_chat(chat_id)]

    @r.post("/chats/{chat_id}/drafts/{draft_id}/stop")
    async def stop_draft(chat_id: int, draft_id: int, body: StopIn | None = None) -> dict[str, Any]:
        """The user presses Telegram's stop button on the draft: a stopped_message_generation
        update. Without `force`, only a live draft sent with can_stop has that button."""
        body = body or StopIn()
        c = chat_or_404(sandbox, chat_id)
        draft = sandbox.drafts.get(chat_id, draft_id, body.message_thread_id)
        if not body.force:
            if draft is None or draft.state != "active":
                raise HTTPException(404, f"no active draft {draft_id} in chat {chat_id}")
            if not draft.can_stop:
                raise HTTPException(409, "that draft was sent without can_stop: no stop button")
        stopped: dict[str, Any] = {"chat": c.to_api(), "draft_id": draft_id}
        if body.message_thread_id is not None:
            stopped["message_thread_id"] = body.message_thread_id
        if draft is not None:
            sandbox.drafts.stop(draft)
            sandbox.events.publish(
                {"type": "draft_end", "chat_id": chat_id, "draft": draft.to_json()}
            )
        update = sandbox.enqueue({"stopped_message_generation": stopped})
        return {"update": update, "draft": draft.to_json() if draft else None}

    return r
