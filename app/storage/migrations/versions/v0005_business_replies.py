"""delivery_parts.business_connection_id (replies to Telegram Business chats)

A reply to a `business_message` is sent with the chat's `business_connection_id` (it lands in
the business owner's chat with the customer, sent as the owner), so each queued part keeps it.

Revision ID: 0005
Revises: 0003 (another branch adds 0004 in parallel; the two are chained when merged)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "delivery_parts", sa.Column("business_connection_id", sa.String(128), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("delivery_parts") as batch:
        batch.drop_column("business_connection_id")
