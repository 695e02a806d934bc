"""Turning raw Telegram updates into the flat shape the pipeline works with.

Everything here is pure and total: Telegram adds fields every Bot API release, old clients and
test fixtures omit fields, and a webhook body is whatever someone POSTed. So no function in this
module raises on any JSON value; what the gateway cannot handle is reported as
``kind="unsupported"`` (with a reason), never as an exception that would make a webhook fail and
Telegram redeliver the same update forever.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal, TypedDict

from app.logger import get_logger

log = get_logger(__name__)

#: Update kinds the gateway handles, in the order they are looked for: the webhook stores only
#: these, `setWebhook` / `getUpdates` ask Telegram for only these (`allowed_updates`), and the
#: pipeline parses them. The one list: a new kind is added here and nowhere else.
HANDLED_KINDS = (
    "message",
    "edited_message",
    "callback_query",
    "business_message",
    "edited_business_message",
    "stopped_message_generation",
)
#: The earlier name of `HANDLED_KINDS`.
SUPPORTED_KINDS = HANDLED_KINDS
#: Kinds whose body is a Message (Telegram Business messages included).
MESSAGE_KINDS = ("message", "edited_message", "business_message", "edited_business_message")
#: Edits: recorded in the history, never answered.
EDIT_KINDS = frozenset({"edited_message", "edited_business_message"})

Kind = Literal[
    "message",
    "edited_message",
    "callback_query",
    "business_message",
    "edited_business_message",
    "stopped_message_generation",
    "unsupported",
]


#: What `parse_update` returns: still a dict (the original API), with every key present. The
#: functional form because one key is `from` (the sender), a Python keyword.
ParsedUpdate = TypedDict(
    "ParsedUpdate",
    {
        "update_id": int | None,
        "kind": Kind,
        "unsupported_reason": str | None,
        "chat_id": int | None,
        "telegram_id": int | None,
        "chat": dict[str, Any] | None,
        "from": dict[str, Any] | None,
        "chat_key": str | None,
        "text": str,
        "message_id": int | None,
        "media": str | None,
        "is_command": bool,
        "command": str | None,
        "command_args": str,
        "command_bot": str | None,
        "callback_query_id": str | None,
        "callback_data": str | None,
        "callback_message_id": int | None,
        "business_connection_id": str | None,
        "media_group_id": str | None,
        "raw": Any,
    },
)

#: Media kinds recognised in a message, in detection order. Order matters: an animation message
#: also carries `document`, and a venue message also carries `location`.
MEDIA_KINDS = (
    "sticker",
    "photo",
    "voice",
    "video_note",
    "video",
    "animation",
    "audio",
    "document",
    "venue",
    "location",
    "contact",
    "poll",
    "dice",
)

# "/cmd", "/cmd@SomeBot", followed by the end of the text or whitespace. Telegram allows
# 1-32 characters of latin letters, digits and underscores in a command; we accept up to 64.
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    # bool is an int subclass; a `true` chat id is garbage, not 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return repr(round(float(value), 5))


def _duration(value: Any) -> str:
    seconds = _int(value)
    return f" {seconds}s" if seconds is not None else ""


def _labelled(kind: str, *parts: Any) -> str:
    words = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return f"[{kind} {words}]" if words else f"[{kind}]"


def media_kind(message: Any) -> str | None:
    """The kind of media a message carries (see `MEDIA_KINDS`), or None for none."""
    msg = _dict(message)
    for kind in MEDIA_KINDS:
        if msg.get(kind) not in (None, False, "", []):
            return kind
    return None


def _describe_media(msg: dict[str, Any], kind: str) -> str:
    item = msg.get(kind)
    obj = _dict(item)
    if kind == "sticker":
        return _labelled("sticker", obj.get("emoji"))
    if kind in ("voice", "video", "video_note"):
        return f"[{kind}{_duration(obj.get('duration'))}]"
    if kind == "document":
        return _labelled("document", obj.get("file_name"))
    if kind == "audio":
        return _labelled("audio", obj.get("title") or obj.get("file_name") or obj.get("performer"))
    if kind == "location":
        return f"[location {_number(obj.get('latitude'))}, {_number(obj.get('longitude'))}]"
    if kind == "venue":
        return _labelled("venue", obj.get("title"))
    if kind == "contact":
        name = " ".join(_str(obj.get(k)).strip() for k in ("first_name", "last_name")).strip()
        return _labelled("contact", name, obj.get("phone_number"))
    if kind == "poll":
        return _labelled("poll", obj.get("question"))
    if kind == "dice":
        value = _int(obj.get("value"))
        return _labelled("dice", obj.get("emoji"), str(value) if value is not None else None)
    return f"[{kind}]"  # photo, animation


def safe_extract_text(message: Any) -> str:
    """The text to record and to hand to the agent for a message (or a callback query).

    Text first, then a media caption, then a short bracketed description of the media
    (``[sticker 😀]``, ``[voice 3s]``, ``[location 48.85, 2.35]`` ...) so that the history and the
    agent see *something* for non-text messages. A callback query dict yields its ``data``.
    Returns "" for anything else; never raises.
    """
    try:
        msg = _dict(message)
        text = msg.get("text")
        if isinstance(text, str) and text:
            return text
        caption = msg.get("caption")
        if isinstance(caption, str) and caption:
            return caption
        kind = media_kind(msg)
        if kind is not None:
            return _describe_media(msg, kind)
        # A CallbackQuery has an `id` and `chat_instance`/`data`, and no `message_id`.
        if "message_id" not in msg and ("data" in msg or "chat_instance" in msg):
            return _str(msg.get("data"))
        return ""
    except Exception:  # pragma: no cover - defensive: the helpers above are total
        log.warning("safe_extract_text failed", exc_info=True)
        return ""


def build_display_name(chat: Any) -> str:
    """A human name for a chat or user: "first last", else title, else @username, else the id."""
    try:
        obj = _dict(chat)
        name = " ".join(
            part.strip()
            for part in (_str(obj.get("first_name")), _str(obj.get("last_name")))
            if part.strip()
        )
        if name:
            return name
        title = _str(obj.get("title")).strip()
        if title:
            return title
        username = _str(obj.get("username")).strip()
        if username:
            return f"@{username}"
        ident = obj.get("id")
        if isinstance(ident, int | str) and not isinstance(ident, bool) and str(ident):
            return f"Telegram user {ident}"
        return "Telegram user"
    except Exception:  # pragma: no cover - defensive
        return "Telegram user"


def parse_command(text: str) -> tuple[str | None, str, str | None]:
    """``("/cmd", "args", "BotName" | None)`` for a leading command, else ``(None, "", None)``.

    The command is lower-cased (Telegram clients treat ``/Start`` like ``/start``); the bot name
    of ``/cmd@BotName`` is returned so a caller can ignore commands addressed to another bot.
    """
    m = _COMMAND_RE.match(text)
    if not m:
        return None, "", None
    return "/" + m.group(1).lower(), text[m.end() :].strip(), m.group(2)


def _empty(update: Any) -> ParsedUpdate:
    update_id = _int(update.get("update_id")) if isinstance(update, dict) else None
    return {
        "update_id": update_id,
        "kind": "unsupported",
        "unsupported_reason": None,
        "chat_id": None,
        "telegram_id": None,
        "chat": None,
        "from": None,
        "chat_key": None,
        "text": "",
        "message_id": None,
        "media": None,
        "is_command": False,
        "command": None,
        "command_args": "",
        "command_bot": None,
        "callback_query_id": None,
        "callback_data": None,
        "callback_message_id": None,
        "business_connection_id": None,
        "media_group_id": None,
        "raw": update,
    }


def _unsupported(out: ParsedUpdate, reason: str) -> ParsedUpdate:
    out["kind"] = "unsupported"
    out["unsupported_reason"] = reason
    return out


def _private_chat_from(user: dict[str, Any]) -> dict[str, Any]:
    """The private chat a user has with the bot: Telegram gives it the user's id."""
    chat: dict[str, Any] = {"id": user.get("id"), "type": "private"}
    for key in ("first_name", "last_name", "username"):
        if isinstance(user.get(key), str):
            chat[key] = user[key]
    return chat


def chat_key_of(kind: str, body: Any) -> str | None:
    """The key that orders one chat's updates, for the webhook and the pipeline alike.

    ``str(chat_id)``, or ``"user:<id>"`` for a button under an inline-mode message (no chat is
    known, only the user). None when the body names neither.
    """
    obj = _dict(body)
    if kind == "callback_query":
        chat_id = _int(_dict(_dict(obj.get("message")).get("chat")).get("id"))
        if chat_id is not None:
            return str(chat_id)
        sender_id = _int(_dict(obj.get("from")).get("id"))
        return f"user:{sender_id}" if sender_id is not None else None
    chat_id = _int(_dict(obj.get("chat")).get("id"))
    return str(chat_id) if chat_id is not None else None


def _parse_message(out: ParsedUpdate, kind: Kind, msg: dict[str, Any]) -> ParsedUpdate:
    chat = _dict(msg.get("chat"))
    sender = _dict(msg.get("from"))
    chat_id = _int(chat.get("id"))
    telegram_id = _int(sender.get("id"))
    out["chat"] = chat or None
    out["chat_id"] = chat_id
    out["telegram_id"] = telegram_id
    out["message_id"] = _int(msg.get("message_id"))
    out["chat_key"] = chat_key_of(kind, msg)
    out["from"] = sender or None
    if chat_id is None:
        return _unsupported(out, "message without chat id")
    if telegram_id is None:
        return _unsupported(out, "message without sender")
    if chat.get("type") == "channel":
        return _unsupported(out, "channel message")
    if kind in ("business_message", "edited_business_message"):
        connection = msg.get("business_connection_id")
        if not isinstance(connection, str) or not connection:
            return _unsupported(out, "business message without business_connection_id")
        out["business_connection_id"] = connection
        if msg.get("sender_business_bot") is not None:
            # What the bot itself sent for the business account comes back as an update.
            return _unsupported(out, "the bot's own message in a business chat")
        if telegram_id != chat_id:
            # A business chat is the owner's private chat with a customer (chat id = the
            # customer): a message from anyone else is the owner's own, not for the bot.
            return _unsupported(out, "the business account owner's own message")
    text = msg.get("text")
    caption = msg.get("caption")
    media = media_kind(msg)
    has_text = isinstance(text, str) and bool(text)
    has_caption = isinstance(caption, str) and bool(caption)
    if not (has_text or has_caption or media):
        # Service messages (new_chat_members, pinned_message, migrate_*, video_chat_started, ...)
        # and content kinds we do not know (story, game, ...) carry nothing to answer.
        return _unsupported(out, "service or unknown message")
    if kind == "edited_message" and media == "location" and not has_text:
        # A live location sends an edited_message every few seconds; answering each would spam.
        return _unsupported(out, "live location update")
    out["media"] = media
    out["text"] = safe_extract_text(msg)
    group = msg.get("media_group_id")
    out["media_group_id"] = group if isinstance(group, str) and group else None
    if isinstance(text, str) and text:
        command, args, bot = parse_command(text)
        out["is_command"] = command is not None
        out["command"] = command
        out["command_args"] = args
        out["command_bot"] = bot
    out["kind"] = kind
    return out


def _parse_callback(out: ParsedUpdate, cq: dict[str, Any]) -> ParsedUpdate:
    sender = _dict(cq.get("from"))
    telegram_id = _int(sender.get("id"))
    cq_id = cq.get("id")
    msg = _dict(cq.get("message"))
    chat = _dict(msg.get("chat"))
    chat_id = _int(chat.get("id"))
    data = cq.get("data")
    out["telegram_id"] = telegram_id
    out["callback_query_id"] = str(cq_id) if isinstance(cq_id, str | int) else None
    out["callback_data"] = data if isinstance(data, str) else None
    out["callback_message_id"] = _int(msg.get("message_id"))
    out["text"] = data if isinstance(data, str) else ""
    out["from"] = sender or None
    if telegram_id is None or out["callback_query_id"] is None:
        return _unsupported(out, "callback query without id or sender")
    if chat_id is not None:
        out["chat"], out["chat_id"] = chat, chat_id
    else:
        # A button under an inline-mode message: no chat is known, only the user. Answers can
        # go to the user's private chat; ordering is per user.
        out["chat"], out["chat_id"] = _private_chat_from(sender), telegram_id
    out["chat_key"] = chat_key_of("callback_query", cq)
    # `message_id` stays None: the message under the button is the bot's own, pressed possibly
    # many times, so it must not be used as the dedupe key of the press.
    out["kind"] = "callback_query"
    return out


def _parse_stop(out: ParsedUpdate, body: Any) -> ParsedUpdate:
    """Telegram's stop button under a draft (Bot API 10.3): the chat is the user's private chat."""
    chat = _dict(_dict(body).get("chat"))
    chat_id = _int(chat.get("id"))
    if chat_id is None:
        return _unsupported(out, "stopped_message_generation without chat")
    out["chat"], out["chat_id"], out["telegram_id"] = chat, chat_id, chat_id
    out["chat_key"] = str(chat_id)
    out["kind"] = "stopped_message_generation"
    return out


def is_stop(parsed: ParsedUpdate) -> bool:
    """`/stop` (to us), or Telegram's stop button: cancel the answer being written."""
    if parsed["kind"] == "stopped_message_generation":
        return True
    return parsed["kind"] == "message" and parsed["command"] == "/stop"


def parse_update(update_json: Any) -> ParsedUpdate:
    """Flatten a Telegram update into what the pipeline needs; never raises.

    Always returns the original keys (``chat_id, telegram_id, text, message_id, raw, is_command,
    command``) plus ``update_id, kind, chat, from, chat_key, media, callback_query_id,
    callback_data, callback_message_id, command_args, command_bot, unsupported_reason``.

    - ``kind`` is "message", "edited_message", "callback_query", "business_message",
      "edited_business_message" or "unsupported" (channel posts, inline queries, member updates,
      reactions, polls, service messages, the bot's own echoes in business chats, garbage).
    - ``business_connection_id``: the Telegram Business connection a business message came
      through (answers go back through it); ``media_group_id``: the album a message belongs to.
    - ``chat`` is the chat object; for a callback query without a message it is the user's
      private chat synthesised from ``from``. Register users from ``from``, not from ``chat``:
      in a group ``chat`` is the group.
    - ``chat_key`` orders one chat's updates (`chat_key_of`).
    - ``message_id`` is the id of the user's message; None for callback queries (see
      ``callback_message_id`` for the message that carried the button). It can be 0 (Bot API
      10.2: ephemeral and server-scheduled messages): never use it alone as a key
      (`message_key`).
    """
    out = _empty(update_json)
    try:
        if not isinstance(update_json, dict):
            return _unsupported(out, "update is not an object")
        if out["update_id"] is None:
            return _unsupported(out, "update without update_id")
        kind: Kind
        for kind in MESSAGE_KINDS:  # type: ignore[assignment]
            if kind in update_json:
                msg = update_json[kind]
                if not isinstance(msg, dict):
                    return _unsupported(out, f"{kind} is not an object")
                return _parse_message(out, kind, msg)
        if "callback_query" in update_json:
            cq = update_json["callback_query"]
            if not isinstance(cq, dict):
                return _unsupported(out, "callback_query is not an object")
            return _parse_callback(out, cq)
        if "stopped_message_generation" in update_json:
            return _parse_stop(out, update_json["stopped_message_generation"])
        other = next((k for k in update_json if k != "update_id"), "nothing")
        return _unsupported(out, f"{other} updates are not handled")
    except Exception as exc:  # pragma: no cover - defensive: every branch above is total
        log.warning("parse_update failed", extra={"error": exc.__class__.__name__})
        return _unsupported(_empty(update_json), "parse error")


def message_key(parsed: ParsedUpdate) -> int | None:
    """The message id that identifies a user's message in the history, or None.

    None for anything but a plain `message`: edits share their original's id, button presses
    have none, and a business chat's ids are another chat's numbering (the customer's chat with
    the business owner has the same chat id as the customer's chat with the bot). None for 0
    too: Telegram gives every ephemeral or server-scheduled message id 0 (Bot API 10.2).
    """
    message_id = parsed["message_id"]
    if parsed["kind"] != "message" or not message_id:
        return None
    return message_id


def message_of(update: Any) -> dict[str, Any]:
    """The Message inside a message-like update (or a callback query's message), else {}."""
    obj = _dict(update)
    for kind in MESSAGE_KINDS:
        if kind in obj:
            return _dict(obj[kind])
    return _dict(_dict(obj.get("callback_query")).get("message"))


#: Keys removed wherever they appear in an update: previews and alternative renditions of media
#: the history never shows (`thumb` is the pre-6.0 name of `thumbnail`).
BLOAT_KEYS = frozenset({"thumbnail", "thumb", "premium_animation"})
#: Keys holding a list of PhotoSize renditions of one picture; only the largest is kept.
PHOTO_SIZE_KEYS = frozenset({"photo", "new_chat_photo"})


def _largest_photo(sizes: list[Any]) -> list[Any]:
    def area(size: Any) -> tuple[int, int]:
        obj = _dict(size)
        w, h, n = _int(obj.get("width")), _int(obj.get("height")), _int(obj.get("file_size"))
        return ((w or 0) * (h or 0), n or 0)

    dicts = [s for s in sizes if isinstance(s, dict)]
    return [_trim(max(dicts, key=area))] if dicts else []


def _trim(value: Any) -> Any:
    if isinstance(value, dict):
        trimmed: dict[str, Any] = {}
        for key, item in value.items():
            if key in BLOAT_KEYS:
                continue
            if key in PHOTO_SIZE_KEYS and isinstance(item, list) and len(item) > 1:
                trimmed[key] = _largest_photo(item)
            else:
                trimmed[key] = _trim(item)
        return trimmed
    if isinstance(value, list):
        return [_trim(item) for item in value]
    return copy.copy(value)


def trim_metadata(update: Any) -> Any:
    """A copy of a raw update without what only bloats the stored history.

    Removes, at any depth (including ``reply_to_message``): ``thumbnail`` / ``thumb`` objects
    (previews of media), sticker ``premium_animation`` files, and every PhotoSize rendition of a
    ``photo`` / ``new_chat_photo`` except the largest. Everything else, including long
    ``entities`` lists (needed to reproduce formatting), is kept. The input is not modified.
    """
    try:
        return _trim(update)
    except RecursionError:  # pragma: no cover - absurdly deep JSON
        return update
