"""Database operations behind the endpoints, written to be safe under concurrent duplicates.

Both idempotent writes use INSERT ... ON CONFLICT DO NOTHING RETURNING and then read the winner:
the unique constraint decides, so thirty simultaneous registrations of one Telegram user create
exactly one row on SQLite and PostgreSQL alike, and nobody sees an IntegrityError.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from users_service.models import Interaction, User, utcnow
from users_service.schemas import INT64_MAX, INT64_MIN, InteractionIn, RegisterIn

# Where a chat id lives in the Telegram update kinds the gateway stores as metadata.
_CHAT_PATHS: tuple[tuple[str, ...], ...] = (
    ("message", "chat", "id"),
    ("edited_message", "chat", "id"),
    ("channel_post", "chat", "id"),
    ("edited_channel_post", "chat", "id"),
    ("business_message", "chat", "id"),
    ("edited_business_message", "chat", "id"),
    ("callback_query", "message", "chat", "id"),
)


def _insert(session: AsyncSession, table: Any) -> Any:
    """The dialect's INSERT, which is the one that knows ON CONFLICT."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chat_id_from_metadata(metadata: dict[str, Any] | None) -> int | None:
    """The chat id inside a raw Telegram update, or None if it carries none we recognise."""
    if not metadata:
        return None
    for path in _CHAT_PATHS:
        node: Any = metadata
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int) and not isinstance(node, bool) and INT64_MIN <= node <= INT64_MAX:
            return node
    return None


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_telegram(session: AsyncSession, telegram_id: int) -> User | None:
    result = await session.execute(select(User).where(User.telegram_id == telegram_id))
    return result.scalar_one_or_none()


async def register_user(session: AsyncSession, body: RegisterIn) -> tuple[User, bool]:
    """Create the user unless the telegram_id exists; return (user, created)."""
    now = utcnow()
    stmt = (
        _insert(session, User.__table__)
        .values(
            id=uuid.uuid4(),
            telegram_id=body.telegram_id,
            full_name=body.full_name,
            phone=body.phone,
            email=body.email,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["telegram_id"])
        .returning(User.__table__.c.id)
    )
    new_id = (await session.execute(stmt)).scalar_one_or_none()
    if new_id is not None:
        user = await session.get(User, new_id)
        assert user is not None
        return user, True
    existing = await get_user_by_telegram(session, body.telegram_id)
    if existing is None:  # cannot happen: the conflict proves the row exists and is committed
        raise RuntimeError(f"telegram_id {body.telegram_id} conflicted but is not readable")
    return existing, False


async def log_interaction(
    session: AsyncSession, user: User, body: InteractionIn
) -> tuple[Interaction, bool]:
    """Store one message; a replay of (user, chat, message id) returns the first row instead."""
    chat_id = body.chat_id
    if chat_id is None:
        chat_id = chat_id_from_metadata(body.metadata)
    if chat_id is None:
        chat_id = user.telegram_id  # a private chat's id is the user's id
    stmt = (
        _insert(session, Interaction.__table__)
        .values(
            user_id=user.id,
            chat_id=chat_id,
            telegram_message_id=body.telegram_message_id,
            direction=body.direction,
            message_text=body.message_text,
            metadata=body.metadata if body.metadata is not None else {},
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["user_id", "chat_id", "telegram_message_id"])
        .returning(Interaction.__table__.c.id)
    )
    new_id = (await session.execute(stmt)).scalar_one_or_none()
    if new_id is not None:
        row = await session.get(Interaction, new_id)
        assert row is not None
        return row, True
    result = await session.execute(
        select(Interaction).where(
            Interaction.user_id == user.id,
            Interaction.chat_id == chat_id,
            Interaction.telegram_message_id == body.telegram_message_id,
        )
    )
    return result.scalar_one(), False


def interactions_query(
    user_id: uuid.UUID,
    *,
    limit: int,
    before: int | None,
    telegram_message_id: int | None,
    chat_id: int | None,
) -> Select[Interaction]:
    """Newest first by id; `before` is a keyset cursor (the smallest id of the previous page)."""
    query = select(Interaction).where(Interaction.user_id == user_id)
    if before is not None:
        query = query.where(Interaction.id < before)
    if telegram_message_id is not None:
        query = query.where(Interaction.telegram_message_id == telegram_message_id)
    if chat_id is not None:
        query = query.where(Interaction.chat_id == chat_id)
    return query.order_by(Interaction.id.desc()).limit(limit)


async def list_interactions(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    before: int | None = None,
    telegram_message_id: int | None = None,
    chat_id: int | None = None,
) -> list[Interaction]:
    query = interactions_query(
        user_id,
        limit=limit,
        before=before,
        telegram_message_id=telegram_message_id,
        chat_id=chat_id,
    )
    return list((await session.execute(query)).scalars())
