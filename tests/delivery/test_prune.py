"""Old delivered jobs are pruned; parked, failed and hook-pending ones are kept."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.delivery import store
from app.delivery.tables import delivery_jobs, delivery_parts
from app.storage.engine import make_engine
from app.storage.migrate import create_schema


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await create_schema(eng)
    yield eng
    await eng.dispose()


async def add_job(conn: object, key: str, state: str, finished_at: float | None) -> None:
    result = await conn.execute(  # type: ignore[attr-defined]
        insert(delivery_jobs).values(
            job_key=key,
            chat_id=1,
            state=state,
            parts_total=2,
            created_at=0.0,
            finished_at=finished_at,
        )
    )
    job_id = result.inserted_primary_key[0]
    for seq in (1, 2):
        await conn.execute(  # type: ignore[attr-defined]
            insert(delivery_parts).values(
                job_id=job_id, chat_id=1, seq=seq, text="t", state="sent", created_at=0.0
            )
        )


async def test_prune_keeps_what_an_operator_or_the_hook_still_needs(engine: AsyncEngine) -> None:
    old, recent = time.time() - 7 * 86400, time.time()
    async with engine.begin() as conn:
        await add_job(conn, "old-recorded", "recorded", old)
        await add_job(conn, "old-skipped", "skipped", old)
        await add_job(conn, "recent-recorded", "recorded", recent)
        for state in ("parked", "failed", "sent", "pending"):
            await add_job(conn, f"old-{state}", state, old)
    async with engine.begin() as conn:
        assert await store.prune_finished(conn, time.time() - 86400) == 2
    async with engine.connect() as conn:
        keys = set((await conn.execute(select(delivery_jobs.c.job_key))).scalars())
        parts = (await conn.execute(select(func.count()).select_from(delivery_parts))).scalar()
    assert keys == {"recent-recorded", "old-parked", "old-failed", "old-sent", "old-pending"}
    assert parts == 2 * len(keys)
