"""inbox.answered_at (a button press is answered once) and storage_retry.state (dead writes)

`answered_at` is claimed by whoever answers a callback query first, the early acker or the
pipeline, in any process. `state` lets a history write the User Service refuses for good be
set aside as `dead` (kept for a human) instead of being retried forever.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inbox", sa.Column("answered_at", sa.Float(), nullable=True))
    op.add_column(
        "storage_retry",
        sa.Column("state", sa.String(12), nullable=False, server_default="pending"),
    )


def downgrade() -> None:
    with op.batch_alter_table("storage_retry") as batch:
        batch.drop_column("state")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("answered_at")
