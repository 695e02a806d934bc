"""The wire format of `POST /api/respond`, as the gateway sends it (see DESIGN.md, round 2).

Requests are read leniently where the gateway's own data is loose (a history row may lack a
direction; unknown fields are ignored so a newer gateway can add some) and strictly where a
wrong type means a broken caller (`text` must be a string): such a body gets a 422 naming the
field, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 100_000  # far above Telegram's 4096, below anything that is not a mistake
MAX_ITEMS = 500


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HistoryItem(_Lenient):
    """One earlier message of the chat: `in` from the person, `out` from the bot."""

    direction: str | None = Field(default=None, examples=["in"])
    text: Annotated[str | None, Field(max_length=MAX_TEXT)] = None
    created_at: str | None = None


class Attachment(_Lenient):
    """A file the person sent; `url` is on the gateway and authenticated for the agent."""

    kind: str = Field(examples=["photo"])
    mime_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    duration: int | None = None
    file_name: str | None = None
    file_unique_id: str | None = None
    caption: Annotated[str | None, Field(max_length=MAX_TEXT)] = None
    url: str | None = None


class Part(_Lenient):
    """One message of a turn made of several (a burst, an album): its own text and id."""

    text: Annotated[str | None, Field(max_length=MAX_TEXT)] = None
    message_id: int | None = None


class RespondIn(_Lenient):
    user: dict[str, Any] = Field(default_factory=dict, description="The User Service's user")
    text: Annotated[str, Field(max_length=MAX_TEXT, description="The turn's (merged) text")]
    chat_id: int | None = None
    message_id: int | None = None
    command: str | None = Field(default=None, examples=["/start"])
    kind: str | None = Field(
        default=None, description="message, callback_query (text is the button's data), ..."
    )
    history: Annotated[list[HistoryItem], Field(max_length=MAX_ITEMS)] = Field(
        default_factory=list, description="Earlier messages, oldest first"
    )
    attachments: Annotated[list[Attachment], Field(max_length=MAX_ITEMS)] = Field(
        default_factory=list
    )
    parts: Annotated[list[Part], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    stream: bool = Field(default=False, description="Answer as Server-Sent Events")


class DataButton(BaseModel):
    text: str
    data: str
    row: int | None = None


class UrlButton(BaseModel):
    text: str
    url: str
    row: int | None = None


Action = DataButton | UrlButton | str


class RespondOut(BaseModel):
    reply: str
    actions: list[Action] = Field(default_factory=list)


class ErrorOut(BaseModel):
    detail: str


class HealthOut(BaseModel):
    status: str
    backend: str
