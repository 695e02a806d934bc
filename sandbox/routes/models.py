"""Request bodies of the control API (validated by FastAPI; a bad body is a 422)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MediaKind = Literal["photo", "document", "video", "voice", "audio", "video_note", "animation"]


class UserIn(BaseModel):
    id: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"


class MediaIn(BaseModel):
    """A file the user sends. Content: base64 (`content_b64`), UTF-8 text (`text_content`), or
    none: generated stand-in bytes, or only a declared `size` (no bytes kept: for files over
    the 20 MB download limit)."""

    kind: MediaKind = "photo"
    content_b64: str | None = None
    text_content: str | None = None
    size: int | None = Field(None, ge=0, le=4 * 1024**3)
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    duration: int | None = Field(None, ge=0)
    length: int | None = Field(None, ge=1)


class MessageIn(BaseModel):
    text: str | None = None
    photo: bool = False
    caption: str | None = None
    sticker: str | None = None
    media: MediaIn | None = None
    chat_id: int | None = None  # a group the user is in; default: the private chat
    reply_to_message_id: int | None = None
    mention_bot: bool = False  # prefix the text (or caption) with "@<bot username> "
    message_id: int | None = None  # force an id, e.g. 0 (Telegram's ephemeral messages)


class CommandIn(BaseModel):
    command: str
    args: str | None = None
    chat_id: int | None = None
    bot_username: bool = False  # "/cmd@botname", as group clients send it


class CallbackIn(BaseModel):
    message_id: int
    data: str
    chat_id: int | None = None


class BurstIn(BaseModel):
    """Several messages from one user in quick succession (`spacing` seconds apart)."""

    messages: list[MessageIn | str] = Field(min_length=1, max_length=100)
    spacing: float = Field(0.0, ge=0, le=10)
    chat_id: int | None = None


class AlbumIn(BaseModel):
    """An album: items share a media_group_id; `order` = delivery order (indexes into items)."""

    items: list[MediaIn] = Field(min_length=2, max_length=10)
    caption: str | None = None  # on the first item, as Telegram clients put it
    order: list[int] | None = None
    spacing: float = Field(0.0, ge=0, le=10)
    chat_id: int | None = None


class GroupIn(BaseModel):
    title: str = "Sandbox group"
    members: list[int] = Field(default_factory=list)
    id: int | None = None
    type: Literal["group", "supergroup"] = "group"
    username: str | None = None


class StopIn(BaseModel):
    message_thread_id: int | None = None
    force: bool = False  # send the update even if the draft had no stop button


class BusinessIn(BaseModel):
    user_id: int  # the business account's owner (a simulated user)
    id: str | None = None
    can_reply: bool = True
    is_enabled: bool = True


class BusinessMessageIn(MessageIn):
    from_user_id: int  # a customer, or the owner (then `chat_id` names the customer)


class FaultIn(BaseModel):
    method: str = "*"  # a method name or a pattern: "*", "editMessage*"
    kind: str = Field("error", pattern="^(error|flood|latency|drop|hang)$")
    count: int | None = Field(1, ge=1)  # null = until cleared
    status: int = 500
    description: str | None = None
    body: dict[str, Any] | None = None
    retry_after: int = 5
    latency: float = 0.0
    hang_seconds: float = 60.0
