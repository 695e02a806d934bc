"""users and interactions

The first schema. Interactions are deduplicated on (user_id, chat_id, telegram_message_id):
Telegram message ids are unique per chat only, and a chat's inbound and outbound messages share
one id space, so the chat belongs in the key and the direction does not.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_bigint_pk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("full_name", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("telegram_id", name=op.f("uq_users_telegram_id")),
    )
    op.create_table(
        "interactions",
        sa.Column("id", _bigint_pk, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("message_text", sa.Text(), nullable=True),
        sa.Column("metadata", _json, server_default="{}", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactions")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_interactions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_interactions_direction")),
        sa.UniqueConstraint(
            "user_id",
            "chat_id",
            "telegram_message_id",
            name=op.f("uq_interactions_user_id_chat_id_telegram_message_id"),
        ),
        sqlite_autoincrement=True,  # never reuse ids: keyset cursors stay meaningful
    )
    op.create_index(
        op.f("ix_interactions_user_id_id_desc"),
        "interactions",
        ["user_id", sa.literal_column("id DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_interactions_user_id_id_desc", table_name="interactions")
    op.drop_table("interactions")
    op.drop_table("users")
