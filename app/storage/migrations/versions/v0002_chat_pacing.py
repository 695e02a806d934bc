"""delivery_chats keeps each chat's pacing state between leases

A chat's token buckets and flood wait travel with its lease, so a replica that takes a chat
over (or a restarted process) does not start with full buckets and trip Telegram's limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("pace_tokens", "group_tokens", "pace_at", "flood_until")


def upgrade() -> None:
    for name in _COLUMNS:
        op.add_column("delivery_chats", sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_chats") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
