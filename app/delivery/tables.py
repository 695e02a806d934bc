"""Tables of the delivery engine, registered on the gateway's shared `metadata`.

- `delivery_jobs`: one row per reply (`job_key`, unique: the idempotency key of `enqueue`).
  State: pending -> sent -> recorded (the `on_delivered` hook returned), or parked (a part gave up
  after retries; re-sendable), failed (the chat is unreachable), skipped (the chat was already
  marked unreachable when the job arrived). `lease_*` guards the hook against two replicas.
- `delivery_parts`: the messages of a job, in order (`id` increases in enqueue order, which is
  the per-chat send order). A part is recorded (`message_id`, `sent_at`) in the transaction that
  follows Telegram's answer, so a restart never sends a recorded part again.
- `delivery_chats`: per-chat state shared by replicas: the lease of the process that currently
  sends this chat's queue (so per-chat order and pacing are decided by one process at a time),
  its pacing state (handed over with the lease), and the "unreachable" mark set by a 403 / chat not found, cleared by `mark_active`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from app.storage.tables import BigIntId, metadata

delivery_jobs = Table(
    "delivery_jobs",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("job_key", String(200), nullable=False, unique=True),
    Column("chat_id", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),
    Column("parts_total", Integer, nullable=False),
    Column("history", Text, nullable=True),
    Column("hook_attempts", Integer, nullable=False, default=0),
    Column("hook_next_at", Float, nullable=False, default=0.0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
)
Index("ix_delivery_jobs_state_hook", delivery_jobs.c.state, delivery_jobs.c.hook_next_at)

delivery_parts = Table(
    "delivery_parts",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, nullable=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("parse_mode", String(16), nullable=True),
    Column("reply_markup", Text, nullable=True),
    Column("reply_to_message_id", BigInteger, nullable=True),
    # Set: this part is the final text of a streamed reply, written over the preview message
    # already in the chat (editMessageText) instead of a new message.
    Column("edit_message_id", BigInteger, nullable=True),
    # Telegram Business: sendMessage goes through this connection (migration 0005).
    Column("business_connection_id", String(128), nullable=True),
    # pending -> sent | parked | failed | skipped
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("first_attempt_at", Float, nullable=True),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("plain_fallback", Integer, nullable=False, default=0),
    Column("message_id", BigInteger, nullable=True),
    Column("sent_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)
# "The oldest pending part of each chat" and "chats with pending parts".
Index(
    "ix_delivery_parts_state_chat_id",
    delivery_parts.c.state,
    delivery_parts.c.chat_id,
    delivery_parts.c.id,
)
Index("ix_delivery_parts_job", delivery_parts.c.job_id, delivery_parts.c.seq)

delivery_chats = Table(
    "delivery_chats",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    # Pacing handed over with the lease (wall clock): the next holder continues the chat's
    # token buckets and flood wait instead of starting with a full burst.
    Column("pace_tokens", Float, nullable=True),
    Column("group_tokens", Float, nullable=True),
    Column("pace_at", Float, nullable=True),
    Column("flood_until", Float, nullable=True),
    Column("unreachable_at", Float, nullable=True),
    Column("unreachable_reason", Text, nullable=True),
)

# The bot-wide pace shared by replicas on PostgreSQL: the GCRA's theoretical arrival time of the
# bot's next message, in the database's clock (epoch seconds), advanced by one statement per send
# (`pacing.SharedPacer`). UNLOGGED on PostgreSQL (migration 0007): lost at a crash, harmlessly.
delivery_bot_pacing = Table(
    "delivery_bot_pacing",
    metadata,
    Column("bot_id", String(32), primary_key=True, autoincrement=False),
    Column("tat", Float, nullable=False),
)
