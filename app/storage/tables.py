"""Tables of the gateway's own database (not the User Service's).

- `inbox`: every accepted update, one row per `update_id` (the dedupe set), with the state of
  its processing: a lease for the worker that holds it, attempts and back-off for failures, and
  `progress`, a JSON record of completed steps so a restarted worker resumes instead of redoing.
- `storage_retry`: history writes the User Service refused or could not take, replayed later.
- `callback_data`: button data longer than Telegram's 64-byte `callback_data`, kept behind a key.

Times are epoch seconds (floats): comparable across processes and replicas, and identical on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer, "sqlite")

inbox = Table(
    "inbox",
    metadata,
    Column("seq", BigIntId, primary_key=True, autoincrement=True),
    Column("update_id", BigInteger, nullable=False, unique=True),
    Column("chat_key", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    # pending -> done | dead | ignored. "Running" is a pending row with a live lease.
    Column("state", String(12), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("progress", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("received_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    # When a pressed button's callback query was answered (claimed): once, by anyone.
    Column("answered_at", Float, nullable=True),
)
# The worker's question is "the oldest unfinished update of each chat": (state, chat_key, seq).
Index("ix_inbox_state_chat_seq", inbox.c.state, inbox.c.chat_key, inbox.c.seq)
Index("ix_inbox_state_finished", inbox.c.state, inbox.c.finished_at)

storage_retry = Table(
    "storage_retry",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    # A stable key (e.g. "in:<update_id>") so the same history write is never queued twice.
    Column("dedupe_key", String(128), nullable=True, unique=True),
    Column("payload", Text, nullable=False),
    # pending -> (deleted once written) | dead (refused for good, kept for a human)
    Column("state", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

callback_data = Table(
    "callback_data",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("data", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
