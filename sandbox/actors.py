"""What simulated users do, as Telegram's servers would report it: the Message objects they
produce (with the entities Telegram adds itself: commands, mentions, links), bursts and albums.

The control API routes call these; they raise HTTPException for the caller's mistakes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import re
import secrets
import time
from typing import Any

from fastapi import HTTPException

from sandbox.media import MediaSpec, build
from sandbox.routes.models import AlbumIn, MediaIn, MessageIn
from sandbox.state import Chat, Sandbox, User

COMMAND_RE = re.compile(r"(?:(?<=\s)|^)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
MENTION_RE = re.compile(r"(?:(?<=[^\w@])|^)@[A-Za-z][A-Za-z0-9_]{4,31}\b")
URL_RE = re.compile(r"\bhttps?://[^\s<>\"']+")


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def text_entities(text: str) -> list[dict[str, Any]]:
    """Telegram's server marks /commands, @mentions and links itself (UTF-16 offsets)."""
    out: list[dict[str, Any]] = []
    for kind, pattern in (("bot_command", COMMAND_RE), ("mention", MENTION_RE), ("url", URL_RE)):
        for m in pattern.finditer(text):
            out.append(
                {"offset": _u16(text[: m.start()]), "length": _u16(m.group(0)), "type": kind}
            )
    out.sort(key=lambda e: (e["offset"], -e["length"]))
    kept: list[dict[str, Any]] = []
    for e in out:  # a /command@bot is one bot_command, not also a mention
        if not kept or e["offset"] >= kept[-1]["offset"] + kept[-1]["length"]:
            kept.append(e)
    return kept


def command_entities(text: str) -> list[dict[str, Any]]:
    """Kept for callers of the old name: every entity Telegram would add."""
    return text_entities(text)


def media_spec(media: MediaIn) -> MediaSpec:
    content: bytes | None = None
    if media.content_b64 is not None:
        try:
            content = base64.b64decode(media.content_b64, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, "content_b64 is not valid base64") from None
    elif media.text_content is not None:
        content = media.text_content.encode()
    fields = media.model_dump(exclude={"kind", "content_b64", "text_content"})
    return MediaSpec(media.kind, content, **fields)


def _reply(chat: Chat, message_id: int) -> dict[str, Any]:
    target = chat.find(message_id)
    if target is None:
        raise HTTPException(404, f"no message {message_id} in chat {chat.id}")
    return {k: v for k, v in target.items() if k != "reply_to_message"}


def _content(sandbox: Sandbox, msg: dict[str, Any], body: MessageIn) -> str | None:
    """Fill in the message's content; return the text that carries entities (if any)."""
    if body.media is not None or body.photo:
        media = body.media or MediaIn(kind="photo")
        msg[media.kind] = build(sandbox.files, media_spec(media))
        return body.caption
    if body.sticker is not None:
        spec = MediaSpec("sticker", emoji=body.sticker or "🙂")
        msg["sticker"] = build(sandbox.files, spec)
        return None
    if body.text:
        return body.text
    raise HTTPException(422, "give text, photo, media or sticker")


def build_message(
    sandbox: Sandbox, user: User, chat: Chat, body: MessageIn, **extra: Any
) -> dict[str, Any]:
    """The Message object for what `user` sends to `chat` (not yet stored or delivered)."""
    if not (body.media or body.photo or body.sticker is not None or body.text):
        raise HTTPException(422, "give text, photo, media or sticker")
    reply = None if body.reply_to_message_id is None else _reply(chat, body.reply_to_message_id)
    if user.blocked:  # writing to the bot again is what "Restart" does
        user.blocked = False
    msg: dict[str, Any] = {
        "message_id": chat.take_message_id() if body.message_id is None else body.message_id,
        "from": user.to_api(),
        "chat": chat.to_api(),
        "date": int(time.time()),
        **extra,
    }
    if reply is not None:
        msg["reply_to_message"] = reply
    text = _content(sandbox, msg, body)
    if text is not None and body.mention_bot:
        text = f"@{sandbox.config.bot_username} {text}"
    if text:
        key = _text_key(msg)
        msg[key] = text
        if ents := text_entities(text):
            msg["entities" if key == "text" else "caption_entities"] = ents
    return msg


def _text_key(msg: dict[str, Any]) -> str:
    has_media = any(k in msg for k in ("photo", "document", "video", "voice", "audio",
                                       "video_note", "animation", "sticker"))  # fmt: skip
    return "caption" if has_media else "text"


def deliver(
    sandbox: Sandbox, chat: Chat, msg: dict[str, Any], kind: str = "message"
) -> dict[str, Any]:
    """Store the message in the transcript and queue its update."""
    sandbox.append_message(chat, msg)
    update = sandbox.enqueue({kind: copy.deepcopy(msg)})
    return {"message": msg, "update": update}


def send(sandbox: Sandbox, user: User, chat: Chat, body: MessageIn) -> dict[str, Any]:
    return deliver(sandbox, chat, build_message(sandbox, user, chat, body))


async def burst(
    sandbox: Sandbox, user: User, chat: Chat, bodies: list[MessageIn], spacing: float
) -> list[dict[str, Any]]:
    """Several messages, `spacing` seconds apart (0 = back to back), each its own update."""
    out = []
    for i, body in enumerate(bodies):
        if i and spacing:
            await asyncio.sleep(spacing)
        out.append(send(sandbox, user, chat, body))
    return out


async def album(sandbox: Sandbox, user: User, chat: Chat, body: AlbumIn) -> dict[str, Any]:
    """One album: consecutive message ids and one media_group_id, as Telegram assigns them,
    delivered as separate updates in `body.order` (default: album order)."""
    order = body.order if body.order is not None else list(range(len(body.items)))
    if sorted(order) != list(range(len(body.items))):
        raise HTTPException(422, "order must be a permutation of the item indexes")
    group_id = str(10**17 + secrets.randbelow(9 * 10**17))
    messages = []
    for i, item in enumerate(body.items):
        caption = body.caption if i == 0 else None
        part = MessageIn(media=item, caption=caption)
        messages.append(build_message(sandbox, user, chat, part, media_group_id=group_id))
    for msg in messages:
        sandbox.append_message(chat, msg)
    updates = []
    for n, index in enumerate(order):
        if n and body.spacing:
            await asyncio.sleep(body.spacing)
        updates.append(sandbox.enqueue({"message": copy.deepcopy(messages[index])}))
    return {"media_group_id": group_id, "messages": messages, "updates": updates}
