"""The durable inbox on SQLite and PostgreSQL: dedupe, per-chat heads, leases, progress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from app.storage.engine import make_engine
from app.storage.inbox import DEAD, DONE, Inbox, NewUpdate
from app.storage.migrate import create_schema


def upd(update_id: int, chat: str = "1") -> NewUpdate:
    return NewUpdate(update_id, chat, "message", json.dumps({"update_id": update_id}))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[object]:
    eng = make_engine(database_url)
    await create_schema(eng)
    yield eng
    await eng.dispose()


def inbox(engine: object, owner: str = "w1", lease: float = 30) -> Inbox:
    return Inbox(engine, owner=owner, lease_seconds=lease)  # type: ignore[arg-type]


async def test_duplicates_are_stored_once(engine: object) -> None:
    box = inbox(engine)
    await box.add_many([upd(1), upd(2), upd(1)])
    await box.add_many([upd(2), upd(3)])
    assert (await box.counts()) == {"pending": 3}


async def test_claim_hands_out_one_head_per_chat_in_order(engine: object) -> None:
    box = inbox(engine)
    await box.add_many([upd(10, "a"), upd(11, "a"), upd(12, "b"), upd(13, "a")])
    first = await box.claim(10)
    assert sorted(i.update_id for i in first) == [10, 12]
    # The next update of chat "a" waits until 10 is finished.
    assert await box.claim(10) == []
    await box.finish(first[0].seq, DONE)
    second = await box.claim(10)
    assert [i.update_id for i in second] == [11]


async def test_claim_is_exclusive_between_owners(engine: object) -> None:
    await inbox(engine).add_many([upd(i, f"chat{i}") for i in range(20)])
    a, b = inbox(engine, "a"), inbox(engine, "b")
    got_a, got_b = await asyncio.gather(a.claim(20), b.claim(20))
    ids_a = {i.update_id for i in got_a}
    ids_b = {i.update_id for i in got_b}
    assert not ids_a & ids_b
    assert ids_a | ids_b == set(range(20))


async def test_expired_lease_is_taken_over_and_renewal_keeps_it(engine: object) -> None:
    await inbox(engine).add_many([upd(1, "x"), upd(2, "y")])
    dead = inbox(engine, "dead", lease=0.3)
    alive = inbox(engine, "alive", lease=0.3)
    other = inbox(engine, "other")
    [held_dead] = await dead.claim(1)
    [held_alive] = await alive.claim(1)
    deadline = asyncio.get_running_loop().time() + 5
    taken: list[int] = []
    while not taken and asyncio.get_running_loop().time() < deadline:
        await alive.renew([held_alive.seq])
        taken = [i.update_id for i in await other.claim(10)]
        await asyncio.sleep(0.05)
    assert taken == [held_dead.update_id]


async def test_progress_is_kept_across_claims(engine: object) -> None:
    box = inbox(engine)
    await box.add_many([upd(5)])
    [item] = await box.claim(1)
    await box.save_progress(item.seq, {"user": {"id": "u1"}, "in_logged": True})
    await box.release([item.seq])
    [again] = await box.claim(1)
    assert again.progress == {"user": {"id": "u1"}, "in_logged": True}


async def test_retry_backoff_and_dead_unblock_the_chat(engine: object) -> None:
    box = inbox(engine)
    await box.add_many([upd(1, "c"), upd(2, "c")])
    [item] = await box.claim(5)
    await box.retry_later(item.seq, 60, "boom", count=True)
    assert await box.claim(5) == []  # the head is backing off; the chat waits behind it
    row = await box.get(1)
    assert row is not None and row["attempts"] == 1 and row["last_error"] == "boom"
    # Not due yet, so reclaiming needs the admin path: set it aside as dead from a claim.
    await box.requeue(1)  # not dead: no-op
    assert (await box.get(1))["attempts"] == 1  # type: ignore[index]
    box2 = inbox(engine, "w2")
    async with box.engine.begin() as conn:  # make it due now
        from sqlalchemy import update

        from app.storage.tables import inbox as t

        await conn.execute(update(t).where(t.c.update_id == 1).values(next_attempt_at=0))
    [item] = await box2.claim(5)
    await box2.finish(item.seq, DEAD, "gave up")
    [nxt] = await box2.claim(5)
    assert nxt.update_id == 2
    assert [r["update_id"] for r in await box.list_by_state(DEAD)] == [1]
    assert await box.requeue(1)
    assert (await box.get(1))["state"] == "pending"  # type: ignore[index]


async def test_prune_keeps_recent_and_dead(engine: object) -> None:
    box = inbox(engine)
    await box.add_many([upd(1, "a"), upd(2, "b")])
    for item in await box.claim(5):
        await box.finish(item.seq, DONE if item.update_id == 1 else DEAD)
    assert await box.prune(3600) == 0
    assert await box.prune(-1) == 1  # everything finished "before now+1s": only the done row
    assert await box.get(1) is None
    assert await box.get(2) is not None
