"""Simulated users: create them, make them write (one message, a burst, an album), run
commands, press buttons, block the bot."""

from __future__ import annotations

import copy
import random
from typing import Any

from fastapi import APIRouter, HTTPException

from sandbox import actors
from sandbox.routes.models import AlbumIn, BurstIn, CallbackIn, CommandIn, MessageIn, UserIn
from sandbox.state import Chat, Sandbox, User


def user_or_404(sandbox: Sandbox, user_id: int) -> User:
    user = sandbox.users.get(user_id)
    if user is None:
        raise HTTPException(404, f"no simulated user {user_id}")
    return user


def chat_for(sandbox: Sandbox, user: User, chat_id: int | None) -> Chat:
    """The user's private chat, or a group (writing there makes the user a member)."""
    chat = sandbox.chats.get(chat_id if chat_id is not None else user.id)
    if chat is None:
        raise HTTPException(404, f"no chat {chat_id}")
    if chat.type != "private" and user.id not in chat.members:
        chat.members.append(user.id)
    return chat


def build_router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter()

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
        return user_or_404(sandbox, user_id).to_control()

    @r.post("/users/{user_id}/messages")
    async def send_as_user(user_id: int, body: MessageIn) -> dict[str, Any]:
        user = user_or_404(sandbox, user_id)
        return actors.send(sandbox, user, chat_for(sandbox, user, body.chat_id), body)

    @r.post("/users/{user_id}/burst")
    async def burst(user_id: int, body: BurstIn) -> list[dict[str, Any]]:
        user = user_or_404(sandbox, user_id)
        chat = chat_for(sandbox, user, body.chat_id)
        bodies = [MessageIn(text=m) if isinstance(m, str) else m for m in body.messages]
        return await actors.burst(sandbox, user, chat, bodies, body.spacing)

    @r.post("/users/{user_id}/album")
    async def album(user_id: int, body: AlbumIn) -> dict[str, Any]:
        user = user_or_404(sandbox, user_id)
        return await actors.album(sandbox, user, chat_for(sandbox, user, body.chat_id), body)

    @r.post("/users/{user_id}/commands")
    async def command_as_user(user_id: int, body: CommandIn) -> dict[str, Any]:
        user = user_or_404(sandbox, user_id)
        name = body.command.lstrip("/")
        if body.bot_username:
            name += "@" + sandbox.config.bot_username
        text = "/" + name + (f" {body.args}" if body.args else "")
        chat = chat_for(sandbox, user, body.chat_id)
        return actors.send(sandbox, user, chat, MessageIn(text=text))

    @r.post("/users/{user_id}/callback")
    async def press_button(user_id: int, body: CallbackIn) -> dict[str, Any]:
        user = user_or_404(sandbox, user_id)
        return _press(sandbox, user, chat_for(sandbox, user, body.chat_id), body)

    @r.post("/users/{user_id}/block")
    async def block(user_id: int) -> dict[str, Any]:
        return _set_blocked(sandbox, user_or_404(sandbox, user_id), True)

    @r.post("/users/{user_id}/unblock")
    async def unblock(user_id: int) -> dict[str, Any]:
        return _set_blocked(sandbox, user_or_404(sandbox, user_id), False)

    return r


def _press(sandbox: Sandbox, user: User, chat: Chat, body: CallbackIn) -> dict[str, Any]:
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


def _set_blocked(sandbox: Sandbox, user: User, blocked: bool) -> dict[str, Any]:
    user.blocked = blocked
    sandbox.events.publish({"type": "user", "user": user.to_control()})
    return user.to_control()
