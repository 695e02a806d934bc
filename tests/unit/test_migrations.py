"""Schema migrations of the gateway's own database (Alembic, `app/storage/migrate.py`).

A database created by the first schema the gateway shipped (`create_all` at b1d5cca, before
migrations and before the per-chat pacing columns) is upgraded in place with its data kept;
a fresh database comes out identical to the tables the code declares; replicas starting
together migrate once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

import app.delivery.tables  # noqa: F401  (registers the delivery tables on the metadata)
from app.storage.engine import make_engine
from app.storage.migrate import current_revision, head_revision, upgrade_to_head
from app.storage.tables import metadata

SCHEMAS = Path(__file__).parents[1] / "data" / "gateway_schema"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    yield eng
    await eng.dispose()


async def _run_script(engine: AsyncEngine, script: str) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if engine.dialect.name == "sqlite":
            await driver.executescript(script)
        else:
            await driver.execute(script)


SAMPLE = [
    "INSERT INTO inbox (update_id, chat_key, kind, payload, state, attempts, next_attempt_at,"
    " received_at, progress) VALUES (101, '42', 'message', '{\"update_id\": 101}', 'pending',"
    ' 0, 0.0, 1.0, \'{"user": {"id": "u1"}}\')',
    "INSERT INTO inbox (update_id, chat_key, kind, payload, state, attempts, next_attempt_at,"
    " received_at, finished_at) VALUES (100, '42', 'message', '{}', 'done', 1, 0.0, 0.5, 0.9)",
    "INSERT INTO storage_retry (dedupe_key, payload, attempts, next_attempt_at, created_at)"
    " VALUES ('in:100', '{\"user_id\": \"u1\"}', 2, 0.0, 1.0)",
    "INSERT INTO callback_data (key, data, created_at) VALUES ('cb:abc', 'long data', 1.0)",
    "INSERT INTO delivery_jobs (job_key, chat_id, state, parts_total, history, hook_attempts,"
    " hook_next_at, created_at) VALUES ('reply:100', 42, 'pending', 2, '{}', 0, 0.0, 1.0)",
    "INSERT INTO delivery_parts (job_id, chat_id, seq, text, state, attempts, next_attempt_at,"
    " plain_fallback, created_at) VALUES (1, 42, 0, 'part one', 'sent', 1, 0.0, 0, 1.0)",
    "INSERT INTO delivery_parts (job_id, chat_id, seq, text, state, attempts, next_attempt_at,"
    " plain_fallback, created_at) VALUES (1, 42, 1, 'part two', 'pending', 0, 0.0, 0, 1.0)",
    "INSERT INTO delivery_chats (chat_id, unreachable_at) VALUES (43, 5.0)",
]
COUNTS = {
    "inbox": 2,
    "storage_retry": 1,
    "callback_data": 1,
    "delivery_jobs": 1,
    "delivery_parts": 2,
    "delivery_chats": 1,
}


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one())
            for t in COUNTS
        }


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_the_first_schema_is_upgraded_in_place_with_its_data(
    engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgres"
    await _run_script(engine, (SCHEMAS / f"first.{dialect}.sql").read_text())
    async with engine.begin() as conn:
        for statement in SAMPLE:
            await conn.execute(text(statement))
    assert await current_revision(engine) is None  # created before migrations existed

    started = time.perf_counter()
    before, after = await upgrade_to_head(engine)
    took = time.perf_counter() - started
    assert (before, after) == (None, head_revision())
    assert await _counts(engine) == COUNTS  # nothing lost
    async with engine.connect() as conn:
        pending = (
            await conn.execute(
                text("SELECT progress, answered_at FROM inbox WHERE update_id = 101")
            )
        ).one()
        assert (
            json.loads(pending.progress) == {"user": {"id": "u1"}} and pending.answered_at is None
        )
        retry = (await conn.execute(text("SELECT state, attempts FROM storage_retry"))).one()
        assert (retry.state, retry.attempts) == ("pending", 2)  # new column, sane default
        chats = (await conn.execute(text("SELECT chat_id, pace_at FROM delivery_chats"))).one()
        assert (chats.chat_id, chats.pace_at) == (43, None)
        parts = (
            await conn.execute(text("SELECT text, state FROM delivery_parts ORDER BY seq"))
        ).all()
        assert [tuple(p) for p in parts] == [("part one", "sent"), ("part two", "pending")]
        assert await conn.run_sync(_diff) == []  # now exactly what the code declares
    with capsys.disabled():
        print(
            f"\n  migration {dialect}: first schema -> {after}, {sum(COUNTS.values())} rows kept,"
            f" {took * 1000:.0f} ms"
        )


async def test_a_fresh_database_matches_the_declared_tables(engine: AsyncEngine) -> None:
    assert await upgrade_to_head(engine) == (None, head_revision())
    assert await upgrade_to_head(engine) == (head_revision(), head_revision())  # idempotent
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_a_pre_migration_database_with_pacing_columns_is_stamped(
    engine: AsyncEngine,
) -> None:
    """A database made by create_all after the pacing columns existed (13dc982): the tables
    are all there already; it is stamped at 0002 and only the later steps run."""
    dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgres"
    await _run_script(engine, (SCHEMAS / f"first.{dialect}.sql").read_text())
    async with engine.begin() as conn:
        for column in ("pace_tokens", "group_tokens", "pace_at", "flood_until"):
            await conn.execute(text(f"ALTER TABLE delivery_chats ADD COLUMN {column} FLOAT"))
    assert (await upgrade_to_head(engine))[1] == head_revision()
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    engines = [make_engine(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(upgrade_to_head(e) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    befores = sorted(str(before) for before, _ in results)
    assert [after for _, after in results] == [head_revision()] * 3
    assert befores.count("None") == 1  # one of them did the work; the others found it done
