"""SQLAlchemy models: the schema the Alembic migrations create, described for the ORM.

Portable types are chosen so one schema runs on SQLite and PostgreSQL: `Uuid` (native uuid on PG,
CHAR(32) on SQLite), JSONB on PG but JSON elsewhere, and a BIGINT key that becomes SQLite's
INTEGER rowid (the only autoincrementing column type SQLite has).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names: migrations can refer to them and they read well in error messages.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
JsonDoc = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zones and hands back naive values; we store UTC and re-attach it, so the
    API always answers with an explicit offset.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    telegram_id: Mapped[int] = mapped_column(BigInteger(), unique=True, nullable=False)
    full_name: Mapped[str | None] = mapped_column(Text())
    phone: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, server_default=func.now()
    )


class Interaction(Base):
    """One message in or out of a chat with a user.

    Dedupe key: (user_id, chat_id, telegram_message_id). Telegram message ids are only unique
    within a chat, and the bot's replies share that chat's id space with the user's messages,
    so the chat is part of the key and the direction is not. NULL message ids never collide.
    """

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("user_id", "chat_id", "telegram_message_id"),
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    chat_id: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger())
    direction: Mapped[str] = mapped_column(String(3), nullable=False)
    message_text: Mapped[str | None] = mapped_column(Text())
    # `metadata` is reserved on declarative classes, hence the attribute name `meta`.
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JsonDoc, nullable=False, default=dict, server_default="{}"
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, server_default=func.now()
    )


# "Latest interactions of a user" is the hot read: WHERE user_id = ? ORDER BY id DESC LIMIT n.
Index("ix_interactions_user_id_id_desc", Interaction.user_id, Interaction.id.desc())
