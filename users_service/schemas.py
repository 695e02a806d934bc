"""Request and response bodies: the wire contract, shared with the OpenAPI document.

Validation here is also what keeps bad input from reaching the database as a 500: integers are
bounded to BIGINT, and text must be storable everywhere (PostgreSQL rejects NUL characters, and a
lone surrogate cannot be encoded as UTF-8), metadata must be finite JSON of reasonable depth
(`NaN` would be refused by JSONB and by our own JSON encoder).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
METADATA_MAX_DEPTH = 64
MESSAGE_TEXT_MAX = 100_000


def check_storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters (\\u0000) cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (lone surrogate)") from None
    return value


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Iterative walk (no recursion limit to hit): finite numbers, storable strings, bounded depth."""
    if value is None:
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > METADATA_MAX_DEPTH:
            raise ValueError(f"metadata is nested deeper than {METADATA_MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                check_storable_text(str(key))
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            check_storable_text(node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError("metadata numbers must be finite (no NaN or Infinity)")
    return value


def metadata_size(value: dict[str, Any]) -> int:
    """Bytes of `value` as compact UTF-8 JSON, the way clients send it and near what is stored.

    Checked in the route, against the configured `MAX_METADATA_BYTES`, after `check_metadata`
    has made sure the value encodes.
    """
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


StorableText = Annotated[str, AfterValidator(check_storable_text)]
TelegramId = Annotated[int, Field(gt=0, le=INT64_MAX, description="Telegram user id")]
ChatId = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, description="Telegram chat id")]
MessageId = Annotated[int, Field(gt=0, le=INT64_MAX, description="Telegram message id")]
Metadata = Annotated[dict[str, Any] | None, AfterValidator(check_metadata)]


class ErrorOut(BaseModel):
    detail: str


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    telegram_id: int
    full_name: str | None
    phone: str | None
    email: str | None
    created_at: datetime
    updated_at: datetime


class AlreadyRegisteredOut(BaseModel):
    """409 body: the existing user travels with the refusal, so a client needs no second call."""

    detail: str
    message: str
    user: UserOut


class RegisterIn(BaseModel):
    telegram_id: TelegramId
    full_name: Annotated[StorableText, Field(max_length=1024)] | None = None
    phone: Annotated[StorableText, Field(max_length=64)] | None = None
    email: Annotated[StorableText, Field(max_length=320)] | None = None


class InteractionIn(BaseModel):
    user_id: uuid.UUID
    direction: Literal["in", "out"]
    message_text: Annotated[StorableText, Field(max_length=MESSAGE_TEXT_MAX)] | None = None
    telegram_message_id: MessageId | None = None
    chat_id: ChatId | None = Field(
        default=None,
        description="Chat the message belongs to; derived from `metadata` (or the user's"
        " telegram_id, a private chat) when absent.",
    )
    metadata: Metadata = Field(default=None, description="Raw Telegram update or reply details.")


class InteractionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: uuid.UUID
    chat_id: int
    telegram_message_id: int | None
    direction: Literal["in", "out"]
    message_text: str | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    created_at: datetime


class HealthOut(BaseModel):
    status: Literal["ok"]
