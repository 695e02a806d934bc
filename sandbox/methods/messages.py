"""Text messages and what happens to them: send, edit (with Telegram's refusals and edit flood
limits), delete, typing, callback answers."""

from __future__ import annotations

from typing import Any

from sandbox.botapi import BotApi, handler, parsed_text
from sandbox.errors import bad_request
from sandbox.formatting import utf16_len

CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}


def checked_text(params: dict[str, Any]) -> tuple[str, list[Any]]:
    text, entities = parsed_text(params["text"], params, "entities")
    if not text.strip():
        raise bad_request("message text is empty")
    if utf16_len(text) > 4096:
        raise bad_request("message is too long")
    return text, entities


@handler("sendMessage")
async def send_message(api: BotApi, params: dict[str, Any]) -> Any:
    chat = api.chat(params["chat_id"], params)
    text, entities = checked_text(params)
    api.flood_check(chat)
    msg = api.base_message(chat, params)
    msg["text"] = text
    if entities:
        msg["entities"] = entities
    return api.finish(chat, msg, params)


@handler("sendChatAction")
async def send_chat_action(api: BotApi, params: dict[str, Any]) -> Any:
    chat = api.chat(params["chat_id"], params)
    if params["action"] not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    api.sandbox.set_typing(chat, params["action"])
    return True


@handler("answerCallbackQuery")
async def answer_callback_query(api: BotApi, params: dict[str, Any]) -> Any:
    query = api.sandbox.callback_queries.pop(params["callback_query_id"], None)
    if query is None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = params.get("text")
    if text is not None and len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    answer = {
        "callback_query_id": params["callback_query_id"],
        "chat_id": query["chat_id"],
        "message_id": query["message_id"],
        "text": text,
        "show_alert": bool(params.get("show_alert")),
        "url": params.get("url"),
    }
    api.sandbox.callback_answers.append(answer)
    api.sandbox.events.publish({"type": "callback_answer", **answer})
    return True


def _inline_markup(params: dict[str, Any]) -> Any:
    markup = params.get("reply_markup")
    return markup if isinstance(markup, dict) and "inline_keyboard" in markup else None


@handler("editMessageText")
async def edit_message_text(api: BotApi, params: dict[str, Any]) -> Any:
    text, entities = checked_text(params)
    target = api.editable(params)
    if target is None:
        return True
    chat, msg = target
    if "text" not in msg:
        raise bad_request("there is no text in the message to edit")
    api.edit_flood_check(chat)
    changes = {"text": text, "entities": entities or None, "reply_markup": _inline_markup(params)}
    return api.apply_edit(chat, msg, changes)


@handler("editMessageReplyMarkup")
async def edit_message_reply_markup(api: BotApi, params: dict[str, Any]) -> Any:
    target = api.editable(params)
    if target is None:
        return True
    chat, msg = target
    api.edit_flood_check(chat)
    markup = params.get("reply_markup")
    keep = markup if isinstance(markup, dict) and markup.get("inline_keyboard") else None
    return api.apply_edit(chat, msg, {"reply_markup": keep})


@handler("deleteMessage")
async def delete_message(api: BotApi, params: dict[str, Any]) -> Any:
    chat = api.chat(params["chat_id"], params)
    msg = chat.find(params["message_id"])
    if msg is None:
        raise bad_request("message to delete not found")
    chat.messages.remove(msg)
    api.sandbox.events.publish(
        {"type": "delete", "chat_id": chat.id, "message_id": params["message_id"]}
    )
    return True
