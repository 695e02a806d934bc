"""The control API under ``/sandbox``: drive simulated users, inspect transcripts and recorded
calls, inject faults, change limits. JSON in, JSON out; documented in docs/sandbox.md."""

from __future__ import annotations

import copy
import random
import re
import secrets
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from sandbox.config import LimitSettings
from sandbox.state import Chat, Fault, Sandbox, User

COMMAND_RE = re.compile(r"(?:(?<=\s)|^)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


class UserIn(BaseModel):
    id: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"


class MessageIn(BaseModel):
    text: str | None = None
    photo: bool = False
    caption: str | None = None
    sticker: str | None = None
    chat_id: int | None = None  # a group the user is in; default: the private chat
    reply_to_message_id: int | None = None


class CommandIn(BaseModel):
    command: str
    args: str | None = None
    chat_id: int | None = None


class CallbackIn(BaseModel):
    message_id: int
    data: str
    chat_id: int | None = None


class GroupIn(BaseModel):
    title: str = "Sandbox group"
    members: list[int] = Field(default_factory=list)
    id: int | None = None


class FaultIn(BaseModel):
    method: str = "*"
    kind: str = Field("error", pattern="^(error|flood|latency|drop|hang)$")
    count: int | None = Field(1, ge=1)  # null = until cleared
    status: int = 500
    description: str | None = None
    body: dict[str, Any] | None = None
    retry_after: int = 5
    latency: float = 0.0
    hang_seconds: float = 60.0


def command_entities(text: str) -> list[dict[str, Any]]:
    """Telegram's server marks /commands as bot_command entities; so do we (UTF-16 offsets)."""
    out = []
    for m in COMMAND_RE.finditer(text):
        offset = len(text[: m.start()].encode("utf-16-le")) // 2
        length = len(m.group(0).encode("utf-16-le")) // 2
        out.append({"offset": offset, "length": length, "type": "bot_command"})
    return out


def build_router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter(prefix="/sandbox")

    def user_or_404(user_id: int) -> User:
        user = sandbox.users.get(user_id)
        if user is None:
            raise HTTPException(404, f"no simulated user {user_id}")
        return user

    def chat_for(user: User, chat_id: int | None) -> Chat:
        chat = sandbox.chats.get(chat_id if chat_id is not None else user.id)
        if chat is None:
            raise HTTPException(404, f"no chat {chat_id}")
        if chat.type != "private" and user.id not in chat.members:
            chat.members.append(user.id)
        return chat

    def user_message(user: User, chat: Chat, body: MessageIn) -> dict[str, Any]:
        if user.blocked:  # writing to the bot again is what "Restart" does
            user.blocked = False
        msg: dict[str, Any] = {
            "message_id": chat.take_message_id(),
            "from": user.to_api(),
            "chat": chat.to_api(),
            "date": int(time.time()),
        }
        if body.reply_to_message_id is not None:
            target = chat.find(body.reply_to_message_id)
            if target is None:
                raise HTTPException(404, f"no message {body.reply_to_message_id}")
            msg["reply_to_message"] = {k: v for k, v in target.items() if k != "reply_to_message"}
        if body.photo:
            token = secrets.token_urlsafe(12)
            msg["photo"] = [
                {"file_id": f"sandbox-photo-{token}-s", "file_unique_id": token[:10] + "s",
                 "file_size": 1200, "width": 90, "height": 90},
                {"file_id": f"sandbox-photo-{token}-m", "file_unique_id": token[:10] + "m",
                 "file_size": 48000, "width": 800, "height": 800},
            ]  # fmt: skip
            if body.caption:
                msg["caption"] = body.caption
                if ents := command_entities(body.caption):
                    msg["caption_entities"] = ents
        elif body.sticker is not None:
            token = secrets.token_urlsafe(12)
            msg["sticker"] = {
                "width": 512, "height": 512, "emoji": body.sticker or "🙂",
                "set_name": "SandboxStickers", "is_animated": False, "is_video": False,
                "type": "regular", "file_id": f"sandbox-sticker-{token}",
                "file_unique_id": token[:10], "file_size": 9000,
            }  # fmt: skip
        elif body.text:
            msg["text"] = body.text
            if ents := command_entities(body.text):
                msg["entities"] = ents
        else:
            raise HTTPException(422, "give text, photo or sticker")
        sandbox.append_message(chat, msg)
        update = sandbox.enqueue({"message": copy.deepcopy(msg)})
        return {"message": msg, "update": update}

    @r.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "bot": sandbox.bot_user(),
            "token": sandbox.config.bot_token,
            "spec_version": "Bot API 10.1",
            "webhook": {
                "url": sandbox.webhook.url,
                "secret_set": bool(sandbox.webhook.secret_token),
            },
            "pending_updates": len(sandbox.pending),
        }

    @r.post("/reset")
    async def reset() -> dict[str, bool]:
        sandbox.reset()
        return {"ok": True}

    @r.post("/users")
    async def create_user(body: UserIn) -> dict[str, Any]:
        fields = body.model_dump(exclude_none=True)
        if "first_name" not in fields:
            fields["first_name"] = f"User {len(sandbox.users) + 1}"
        return sandbox.add_user(**fields).to_control()

    @r.get("/users")
    async def list_users() -> list[dict[str, Any]]:
        return [u.to_control() for u in sandbox.users.values()]

    @r.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        return user_or_404(user_id).to_control()

    @r.post("/users/{user_id}/messages")
    async def send_as_user(user_id: int, body: MessageIn) -> dict[str, Any]:
        user = user_or_404(user_id)
        return user_message(user, chat_for(user, body.chat_id), body)

    @r.post("/users/{user_id}/commands")
    async def command_as_user(user_id: int, body: CommandIn) -> dict[str, Any]:
        user = user_or_404(user_id)
        text = "/" + body.command.lstrip("/") + (f" {body.args}" if body.args else "")
        return user_message(user, chat_for(user, body.chat_id), MessageIn(text=text))

    @r.post("/users/{user_id}/callback")
    async def press_button(user_id: int, body: CallbackIn) -> dict[str, Any]:
        user = user_or_404(user_id)
        chat = chat_for(user, body.chat_id)
        msg = chat.find(body.message_id)
        if msg is None or not msg.get("from", {}).get("is_bot"):
            raise HTTPException(404, f"no bot message {body.message_id} in chat {chat.id}")
        buttons = [b for row in msg.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
        if not any(b.get("callback_data") == body.data for b in buttons):
            raise HTTPException(400, f"message {body.message_id} has no button with that data")
        query_id = str(random.randint(10**17, 10**19))
        sandbox.callback_queries[query_id] = {"chat_id": chat.id, "message_id": msg["message_id"]}
        query = {
            "id": query_id,
            "from": user.to_api(),
            "message": copy.deepcopy(msg),
            "chat_instance": chat.chat_instance,
            "data": body.data,
        }
        update = sandbox.enqueue({"callback_query": query})
        sandbox.events.publish({"type": "callback", "chat_id": chat.id, "query": query})
        return {"callback_query": query, "update": update}

    @r.post("/users/{user_id}/block")
    async def block(user_id: int) -> dict[str, Any]:
        user = user_or_404(user_id)
        user.blocked = True
        sandbox.events.publish({"type": "user", "user": user.to_control()})
        return user.to_control()

    @r.post("/users/{user_id}/unblock")
    async def unblock(user_id: int) -> dict[str, Any]:
        user = user_or_404(user_id)
        user.blocked = False
        sandbox.events.publish({"type": "user", "user": user.to_control()})
        return user.to_control()

    @r.post("/groups")
    async def create_group(body: GroupIn) -> dict[str, Any]:
        return sandbox.chat_summary(sandbox.add_group(body.title, body.members, body.id))

    @r.post("/updates")
    async def deliver_raw(request: Request) -> dict[str, Any]:
        update = await request.json()
        if not isinstance(update, dict):
            raise HTTPException(422, "an Update must be a JSON object")
        sandbox.enqueue(update, raw=True)
        return {"queued": True, "update_id": update.get("update_id")}

    @r.get("/updates/pending")
    async def pending() -> list[dict[str, Any]]:
        return list(sandbox.pending)

    @r.get("/deliveries")
    async def deliveries() -> list[dict[str, Any]]:
        return sandbox.deliveries

    @r.get("/chats")
    async def chats() -> list[dict[str, Any]]:
        return [sandbox.chat_summary(c) for c in sandbox.chats.values()]

    @r.get("/chats/{chat_id}")
    async def chat(chat_id: int) -> dict[str, Any]:
        c = sandbox.chats.get(chat_id)
        if c is None:
            raise HTTPException(404, f"no chat {chat_id}")
        return sandbox.chat_summary(c)

    @r.get("/chats/{chat_id}/messages")
    async def messages(chat_id: int) -> list[dict[str, Any]]:
        c = sandbox.chats.get(chat_id)
        if c is None:
            raise HTTPException(404, f"no chat {chat_id}")
        return c.messages

    @r.get("/callback-answers")
    async def callback_answers() -> list[dict[str, Any]]:
        return sandbox.callback_answers

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
        }

    @r.post("/faults")
    async def add_fault(body: FaultIn) -> dict[str, Any]:
        resp_body = body.body
        if resp_body is None and body.description is not None:
            resp_body = {"ok": False, "error_code": body.status, "description": body.description}
        fault = Fault(
            id=len(sandbox.faults) + int(time.time() * 1000),
            method=body.method.lower(),
            kind=body.kind,
            remaining=body.count,
            status=body.status,
            body=resp_body,
            retry_after=body.retry_after,
            latency=body.latency,
            hang_seconds=body.hang_seconds,
        )
        sandbox.faults.append(fault)
        return fault.to_json()

    @r.get("/faults")
    async def list_faults() -> list[dict[str, Any]]:
        return [f.to_json() for f in sandbox.faults]

    @r.delete("/faults")
    async def clear_faults() -> dict[str, bool]:
        sandbox.faults.clear()
        return {"ok": True}

    @r.get("/limits")
    async def get_limits() -> dict[str, Any]:
        return sandbox.flood.settings.model_dump()

    @r.put("/limits")
    async def set_limits(request: Request) -> dict[str, Any]:
        changes = await request.json()
        try:
            merged = LimitSettings(**{**sandbox.flood.settings.model_dump(), **changes})
        except Exception as exc:
            raise HTTPException(422, str(exc)) from None
        sandbox.flood.configure(merged)
        return merged.model_dump()

    return r
