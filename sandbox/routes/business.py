"""Telegram Business: connect a user's business account to the bot; customers (or the owner)
write in the owner's chats and the bot gets ``business_message`` updates."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, HTTPException

from sandbox import actors
from sandbox.business import BusinessConnection
from sandbox.routes.models import BusinessIn, BusinessMessageIn
from sandbox.routes.users import user_or_404
from sandbox.state import Sandbox


def connection_or_404(sandbox: Sandbox, connection_id: str) -> BusinessConnection:
    connection = sandbox.business.get(connection_id)
    if connection is None:
        raise HTTPException(404, f"no business connection {connection_id}")
    return connection


def build_router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter()

    @r.post("/business")
    async def connect(body: BusinessIn) -> dict[str, Any]:
        """Connect (or, with an existing id, change) a business account: a
        ``business_connection`` update."""
        owner = user_or_404(sandbox, body.user_id)
        connection_id = body.id or secrets.token_urlsafe(12)
        connection = sandbox.business.get(connection_id)
        if connection is None:
            connection = sandbox.business[connection_id] = BusinessConnection(connection_id, owner)
        connection.can_reply, connection.is_enabled = body.can_reply, body.is_enabled
        update = sandbox.enqueue({"business_connection": connection.to_api()})
        return {"connection": connection.to_api(), "update": update}

    @r.get("/business")
    async def connections() -> list[dict[str, Any]]:
        return [c.to_api() for c in sandbox.business.values()]

    @r.post("/business/{connection_id}/messages")
    async def business_message(connection_id: str, body: BusinessMessageIn) -> dict[str, Any]:
        """A customer writes to the business account (or the owner writes to customer
        `chat_id`): a ``business_message`` update."""
        connection = connection_or_404(sandbox, connection_id)
        sender = user_or_404(sandbox, body.from_user_id)
        if sender.id == connection.owner.id:
            if body.chat_id is None:
                raise HTTPException(422, "the owner writes to a customer: give chat_id")
            customer = user_or_404(sandbox, body.chat_id)
        else:
            customer = sender
        chat = connection.chat_with(customer)
        msg = actors.build_message(
            sandbox, sender, chat, body.model_copy(update={"chat_id": None}),
            business_connection_id=connection_id,
        )  # fmt: skip
        return actors.deliver(sandbox, chat, msg, kind="business_message")

    @r.get("/business/{connection_id}/chats/{customer_id}/messages")
    async def business_transcript(connection_id: str, customer_id: int) -> list[dict[str, Any]]:
        chat = connection_or_404(sandbox, connection_id).chats.get(customer_id)
        return chat.messages if chat is not None else []

    return r
