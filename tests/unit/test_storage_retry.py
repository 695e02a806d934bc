"""The history-write retry queue on SQLite and PostgreSQL, and the original module functions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.engine import make_engine
from app.storage.migrate import create_schema
from app.storage.retry_queue import RetryQueue
from app.user_client import UserServiceError


class Writer:
    """Stands in for UserServiceClient.log_interaction; can be switched to failing."""

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []
        self.error: Exception | None = None
        self.refuse: dict[str, Exception] = {}  # message_text -> the error that write gets
        self.delay = 0.0

    async def log_interaction(
        self,
        user_id: str,
        message_text: str,
        direction: str = "in",
        telegram_message_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        if message_text in self.refuse:
            raise self.refuse[message_text]
        payload: dict[str, Any] = {
            "user_id": user_id,
            "message_text": message_text,
            "direction": direction,
            "telegram_message_id": telegram_message_id,
        }
        payload.update({k: v for k, v in (("metadata", metadata), ("chat_id", chat_id)) if v})
        self.written.append(payload)
        return payload

    async def find_interactions(
        self,
        user_id: str,
        *,
        telegram_message_id: int | None = None,
        chat_id: int | None = None,
        direction: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        return [
            r
            for r in reversed(self.written)
            if r["user_id"] == user_id
            and (telegram_message_id is None or r.get("telegram_message_id") == telegram_message_id)
            and (direction is None or r.get("direction") == direction)
        ][:limit]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await create_schema(eng)
    yield eng
    await eng.dispose()


def payload(n: int) -> dict[str, Any]:
    return {"user_id": "u1", "message_text": f"m{n}", "direction": "in", "telegram_message_id": n}


async def test_enqueue_dedupes_and_flush_writes_in_order(engine: AsyncEngine) -> None:
    writer = Writer()
    queue = RetryQueue(engine, writer)
    for n in (1, 2, 3):
        await queue.enqueue(payload(n), dedupe_key=f"in:{n}")
    await queue.enqueue(payload(1), dedupe_key="in:1")  # the same write queued twice
    assert await queue.size() == 3
    assert await queue.flush() == 3
    assert [p["message_text"] for p in writer.written] == ["m1", "m2", "m3"]
    assert await queue.size() == 0


async def test_service_down_keeps_rows_and_backs_off(engine: AsyncEngine) -> None:
    writer = Writer()
    writer.error = UserServiceError("down", status=None)
    queue = RetryQueue(engine, writer, base_delay=30)
    await queue.enqueue(payload(1), dedupe_key="in:1")
    await queue.enqueue(payload(2), dedupe_key="in:2")
    assert await queue.flush() == 0
    [first, second] = await queue.list()
    # An outage is never held against the row (it cannot make it dead), but it backs off.
    assert first["attempts"] == 0 and "down" in first["last_error"]
    assert first["next_attempt_at"] > time.time()
    assert second["last_error"] is None  # stopped at the first outage: the rest would fail too
    writer.error = None
    assert await queue.flush() == 1  # the first row waits for its back-off
    await queue.make_all_due()  # what POST /admin/flush-retries does
    assert await queue.flush() == 1
    assert await queue.size() == 0


async def test_rejected_row_does_not_block_the_others(engine: AsyncEngine) -> None:
    writer = Writer()
    writer.refuse["m1"] = UserServiceError("unknown user", status=404)
    queue = RetryQueue(engine, writer)
    await queue.enqueue(payload(1))
    await queue.enqueue(payload(2))
    assert await queue.flush() == 1
    [kept] = await queue.list()
    assert kept["payload"]["message_text"] == "m1"  # kept for a human, never dropped
    assert kept["state"] == "dead"  # a 404 is a permanent refusal: not retried forever
    assert await queue.flush() == 0 and writer.written == [payload(2)]
    assert await queue.requeue(kept["id"])  # an operator gives it another go
    assert (await queue.list())[0]["state"] == "pending"


async def test_two_flushers_never_send_a_row_twice(engine: AsyncEngine) -> None:
    writer = Writer()
    writer.delay = 0.01
    a, b = RetryQueue(engine, writer), RetryQueue(engine, writer)  # e.g. two replicas
    for n in range(20):
        await a.enqueue(payload(n))
    sent = await asyncio.gather(a.flush(), b.flush())
    assert sum(sent) == 20
    assert sorted(p["telegram_message_id"] for p in writer.written) == list(range(20))


async def test_replay_of_a_write_that_reached_the_service_is_skipped(engine: AsyncEngine) -> None:
    """A queued write whose answer timed out may be stored already; a flusher killed between
    the write and the delete replays it at the next start. Neither may store it twice."""
    writer = Writer()
    queue = RetryQueue(engine, writer)
    await queue.enqueue(payload(5), dedupe_key="in:5")
    writer.written.append(payload(5))  # it did reach the service
    out = {
        "user_id": "u1",
        "message_text": "reply",
        "direction": "out",
        "telegram_message_id": None,
        "metadata": {"update_id": 77},
    }
    await queue.enqueue(out, dedupe_key="out:77")
    writer.written.append(out)
    assert await queue.flush() == 2  # both settled...
    assert len(writer.written) == 2  # ...without a second copy
    assert await queue.size() == 0
