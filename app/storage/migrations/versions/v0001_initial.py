"""inbox, retry queue, callback data and the delivery outbox

The first schema the gateway shipped (the delivery engine's first version, before pacing state
was kept per chat). Databases created by that version with `create_all` have exactly these
tables and no `alembic_version`; `app.storage.migrate` recognises them and starts from here.
Each table is created only if it is missing, so such a database upgrades in place.

Revision ID: 0001
Revises:
Create Date: 2026-11-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("inbox"):
        op.create_table(
            "inbox",
            sa.Column("seq", _id, primary_key=True, autoincrement=True),
            sa.Column("update_id", sa.BigInteger(), nullable=False),
            sa.Column("chat_key", sa.String(64), nullable=False),
            sa.Column("kind", sa.String(40), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("state", sa.String(12), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.Float(), nullable=False),
            sa.Column("lease_owner", sa.String(64), nullable=True),
            sa.Column("lease_expires_at", sa.Float(), nullable=True),
            sa.Column("progress", sa.Text(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("received_at", sa.Float(), nullable=False),
            sa.Column("finished_at", sa.Float(), nullable=True),
            sa.PrimaryKeyConstraint("seq", name="pk_inbox"),
            sa.UniqueConstraint("update_id", name="uq_inbox_update_id"),
        )
        op.create_index("ix_inbox_state_chat_seq", "inbox", ["state", "chat_key", "seq"])
        op.create_index("ix_inbox_state_finished", "inbox", ["state", "finished_at"])
    if _missing("storage_retry"):
        op.create_table(
            "storage_retry",
            sa.Column("id", _id, primary_key=True, autoincrement=True),
            sa.Column("dedupe_key", sa.String(128), nullable=True),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.Float(), nullable=False),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_storage_retry"),
            sa.UniqueConstraint("dedupe_key", name="uq_storage_retry_dedupe_key"),
        )
    if _missing("callback_data"):
        op.create_table(
            "callback_data",
            sa.Column("key", sa.String(40), nullable=False),
            sa.Column("data", sa.Text(), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("key", name="pk_callback_data"),
        )
    if _missing("delivery_jobs"):
        op.create_table(
            "delivery_jobs",
            sa.Column("id", _id, primary_key=True, autoincrement=True),
            sa.Column("job_key", sa.String(200), nullable=False),
            sa.Column("chat_id", sa.BigInteger(), nullable=False),
            sa.Column("state", sa.String(12), nullable=False),
            sa.Column("parts_total", sa.Integer(), nullable=False),
            sa.Column("history", sa.Text(), nullable=True),
            sa.Column("hook_attempts", sa.Integer(), nullable=False),
            sa.Column("hook_next_at", sa.Float(), nullable=False),
            sa.Column("lease_owner", sa.String(64), nullable=True),
            sa.Column("lease_expires_at", sa.Float(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("finished_at", sa.Float(), nullable=True),
            sa.PrimaryKeyConstraint("id", name="pk_delivery_jobs"),
            sa.UniqueConstraint("job_key", name="uq_delivery_jobs_job_key"),
        )
        op.create_index("ix_delivery_jobs_state_hook", "delivery_jobs", ["state", "hook_next_at"])
    if _missing("delivery_parts"):
        op.create_table(
            "delivery_parts",
            sa.Column("id", _id, primary_key=True, autoincrement=True),
            sa.Column("job_id", sa.BigInteger(), nullable=False),
            sa.Column("chat_id", sa.BigInteger(), nullable=False),
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("parse_mode", sa.String(16), nullable=True),
            sa.Column("reply_markup", sa.Text(), nullable=True),
            sa.Column("reply_to_message_id", sa.BigInteger(), nullable=True),
            sa.Column("state", sa.String(12), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("first_attempt_at", sa.Float(), nullable=True),
            sa.Column("next_attempt_at", sa.Float(), nullable=False),
            sa.Column("plain_fallback", sa.Integer(), nullable=False),
            sa.Column("message_id", sa.BigInteger(), nullable=True),
            sa.Column("sent_at", sa.Float(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_delivery_parts"),
        )
        op.create_index(
            "ix_delivery_parts_state_chat_id", "delivery_parts", ["state", "chat_id", "id"]
        )
        op.create_index("ix_delivery_parts_job", "delivery_parts", ["job_id", "seq"])
    if _missing("delivery_chats"):
        op.create_table(
            "delivery_chats",
            sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("lease_owner", sa.String(64), nullable=True),
            sa.Column("lease_expires_at", sa.Float(), nullable=True),
            sa.Column("unreachable_at", sa.Float(), nullable=True),
            sa.Column("unreachable_reason", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("chat_id", name="pk_delivery_chats"),
        )


def downgrade() -> None:
    for table in (
        "delivery_chats",
        "delivery_parts",
        "delivery_jobs",
        "callback_data",
        "storage_retry",
        "inbox",
    ):
        op.drop_table(table)
