"""``sendMessageDraft``: stream a partial reply into a private chat (Bot API 9.3, ``can_stop``
and ``keep_on_stop`` from 10.3)."""

from __future__ import annotations

from typing import Any

from sandbox import errors
from sandbox.botapi import BotApi, handler, parsed_text
from sandbox.errors import bad_request
from sandbox.formatting import utf16_len


@handler("sendMessageDraft")
async def send_message_draft(api: BotApi, params: dict[str, Any]) -> Any:
    chat = api.chat(params["chat_id"])
    if chat.type != "private":
        raise bad_request("TEXTDRAFT_PEER_INVALID")  # what Telegram answers for groups
    if params["draft_id"] == 0:
        raise bad_request("DRAFT_ID_INVALID")
    text, entities = parsed_text(params.get("text") or "", params, "entities")
    if utf16_len(text) > 4096:
        raise bad_request("message is too long")
    wait = api.sandbox.flood.acquire_draft(chat.id)
    if wait > 0:
        raise errors.too_many_requests(wait)
    draft = api.sandbox.drafts.update(
        chat.id,
        params.get("message_thread_id"),
        params["draft_id"],
        text,
        entities,
        can_stop=bool(params.get("can_stop")),
        keep_on_stop=bool(params.get("keep_on_stop")),
    )
    if draft.state == "active":
        api.sandbox.events.publish({"type": "draft", "chat_id": chat.id, "draft": draft.to_json()})
    return True
