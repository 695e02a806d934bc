"""The Supabase upgrade SQL in docs/user-service.md does what the document says.

The SQL is read from the document itself (between the `supabase-sql` markers), so the test and
the instructions a team copies cannot drift apart.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import asyncpg
import pytest

from tests.support.pg import temp_database
from tests.support.servers import ROOT

pytestmark = pytest.mark.postgres

LEGACY_SCHEMA = """
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    telegram_id bigint UNIQUE NOT NULL,
    full_name text
);
CREATE TABLE interactions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid,  -- no foreign key: orphans exist in the wild
    telegram_message_id bigint,
    direction text,
    message_text text,
    metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


def doc_sql() -> str:
    text = (ROOT / "docs" / "user-service.md").read_text()
    match = re.search(
        r"<!-- supabase-sql:start -->\s*```sql\n(.*?)```\s*<!-- supabase-sql:end -->", text, re.S
    )
    assert match, "SQL block with supabase-sql markers not found in docs/user-service.md"
    return match.group(1)


def msg(chat: int, mid: int, *, raw: bool = False) -> str:
    update: dict[str, Any] = {
        "update_id": mid,
        "message": {"message_id": mid, "chat": {"id": chat}},
    }
    return json.dumps({"raw": update} if raw else update)


async def test_supabase_upgrade_sql() -> None:
    sql = doc_sql()
    with temp_database("users_supabase") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(LEGACY_SCHEMA)
            alice = await conn.fetchval("INSERT INTO users (telegram_id) VALUES (111) RETURNING id")
            ghost = uuid.uuid4()
            rows = [
                # (user, message id, direction, metadata, created_at offset seconds)
                (alice, 5, "in", msg(111, 5), 0),  # private chat, kept
                (alice, 5, "in", msg(111, 5), 1),  # replayed twice: archived
                (alice, 5, "in", msg(111, 5), 2),
                (alice, 5, "in", msg(-100, 5), 3),  # same id, group chat: a different message
                (alice, 6, "out", json.dumps({"actions": []}), 4),  # no chat: private
                (alice, 7, "in", msg(-100, 7, raw=True), 5),  # old {"raw": ...} wrapper
                (alice, None, "in", "{}", 6),  # no message id: never deduplicated
                (alice, None, "in", "{}", 7),
                (ghost, 9, "in", "{}", 8),  # orphan
            ]
            for user, mid, direction, metadata, offset in rows:
                await conn.execute(
                    "INSERT INTO interactions (user_id, telegram_message_id, direction,"
                    " message_text, metadata, created_at)"
                    " VALUES ($1, $2, $3, 'x', $4::jsonb, now() + make_interval(secs => $5))",
                    user,
                    mid,
                    direction,
                    metadata,
                    offset,
                )

            await conn.execute(sql)
            await conn.execute(sql)  # safe to run again

            got = await conn.fetch(
                "SELECT user_id, chat_id, telegram_message_id FROM interactions ORDER BY created_at"
            )
            assert [(r["user_id"], r["chat_id"], r["telegram_message_id"]) for r in got] == [
                (alice, 111, 5),
                (alice, -100, 5),
                (alice, 111, 6),
                (alice, -100, 7),
                (alice, 111, None),
                (alice, 111, None),
                (ghost, 0, 9),
            ]
            assert await conn.fetchval("SELECT count(*) FROM interactions_duplicates") == 2

            # The rule now holds, and ON CONFLICT can use it.
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    "INSERT INTO interactions (user_id, chat_id, telegram_message_id, direction)"
                    " VALUES ($1, 111, 5, 'out')",
                    alice,
                )
            inserted = await conn.fetch(
                "INSERT INTO interactions (user_id, chat_id, telegram_message_id, direction)"
                " VALUES ($1, 111, 5, 'in')"
                " ON CONFLICT (user_id, chat_id, telegram_message_id) DO NOTHING RETURNING id",
                alice,
            )
            assert inserted == []
            indexes = {
                r["indexname"]
                for r in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'interactions'"
                )
            }
            assert "ix_interactions_user_id_id_desc" in indexes
            assert "uq_interactions_user_id_chat_id_telegram_message_id" in indexes
        finally:
            await conn.close()
