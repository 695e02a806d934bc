"""delivery_bot_pacing: the bot-wide send pace, shared by every replica

One row per bot: the theoretical arrival time (GCRA) of its next message, advanced by one
statement per send (`app/delivery/pacing.py`, `SharedPacer`). On PostgreSQL the table is
UNLOGGED: the value is worthless after a crash (by the time a server is back, "now" is past any
saved slot), and a table that writes no WAL commits without waiting for a WAL flush, so a
reservation costs one round trip and no fsync. SQLite creates the table too (one schema on
both), but a single process there paces itself in memory.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    unlogged = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "delivery_bot_pacing",
        sa.Column("bot_id", sa.String(32), primary_key=True, autoincrement=False),
        sa.Column("tat", sa.Float(), nullable=False),
        prefixes=["UNLOGGED"] if unlogged else [],
    )


def downgrade() -> None:
    op.drop_table("delivery_bot_pacing")
