"""The dispatcher with a real inbox and scripted handlers: order, concurrency, failures, stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.errors import Unavailable
from app.metrics import Metrics
from app.processing.dispatcher import Dispatcher
from app.processing.pipeline import Outcome
from app.storage.engine import make_engine
from app.storage.inbox import DEAD, DONE, Inbox, InboxItem, NewUpdate
from app.storage.migrate import create_schema


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Inbox]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    await create_schema(engine)
    yield Inbox(engine, owner="me", lease_seconds=5)
    await engine.dispose()


def dispatcher(
    box: Inbox, handler: Callable[[InboxItem], Awaitable[Outcome]], **kw: Any
) -> Dispatcher:
    opts: dict[str, Any] = {
        "concurrency": 4,
        "poll_interval": 0.05,
        "lease_seconds": 5,
        "max_attempts": 3,
        "base_delay": 0.01,
        "max_delay": 0.05,
    }
    opts.update(kw)
    return Dispatcher(box, handler, Metrics(), **opts)


async def add(box: Inbox, *pairs: tuple[int, str]) -> None:
    await box.add_many([NewUpdate(u, c, "message", json.dumps({"update_id": u})) for u, c in pairs])


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_per_chat_order_and_bounded_concurrency(box: Inbox) -> None:
    seen: list[int] = []
    active = 0
    peak = 0

    async def handler(item: InboxItem) -> Outcome:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01 * (item.update_id % 3))
        seen.append(item.update_id)
        active -= 1
        return Outcome(DONE)

    # 6 chats x 5 updates, interleaved in arrival order.
    await add(box, *[(chat * 100 + i, f"c{chat}") for i in range(5) for chat in range(6)])
    d = dispatcher(box, handler)
    d.start()
    await until(lambda: _done(box, 30))
    await d.stop(1)
    assert peak <= 4
    for chat in range(6):
        mine = [u for u in seen if u // 100 == chat]
        assert mine == sorted(mine), f"chat {chat} out of order: {mine}"


async def _done(box: Inbox, n: int) -> bool:
    return (await box.counts()).get(DONE, 0) == n


async def test_poison_update_goes_dead_and_chat_moves_on(box: Inbox) -> None:
    calls: list[int] = []

    async def handler(item: InboxItem) -> Outcome:
        calls.append(item.update_id)
        if item.update_id == 1:
            raise ValueError("poison")
        return Outcome(DONE)

    await add(box, (1, "c"), (2, "c"))
    d = dispatcher(box, handler, max_attempts=3)
    d.start()
    await until(lambda: _done(box, 1))
    await d.stop(1)
    assert calls.count(1) == 3 and calls[-1] == 2
    [dead] = await box.list_by_state(DEAD)
    assert dead["update_id"] == 1 and "poison" in dead["last_error"]


async def test_outages_are_retried_without_counting(box: Inbox) -> None:
    failures = 6  # more than max_attempts: an outage must never make an update dead

    async def handler(item: InboxItem) -> Outcome:
        nonlocal failures
        if failures:
            failures -= 1
            raise Unavailable("user service down")
        return Outcome(DONE)

    await add(box, (7, "c"))
    d = dispatcher(box, handler, max_attempts=2)
    d.start()
    await until(lambda: _done(box, 1))
    await d.stop(1)
    row = await box.get(7)
    assert row is not None and row["attempts"] == 0 and row["progress"]["outage_waits"] == 6


async def test_stop_waits_for_in_flight_then_releases_the_rest(box: Inbox) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(item: InboxItem) -> Outcome:
        started.set()
        if item.update_id == 1:
            await asyncio.sleep(0.05)  # finishes within the grace period
            return Outcome(DONE)
        await release.wait()  # never finishes: must be left for the next start
        return Outcome(DONE)

    await add(box, (1, "a"), (2, "b"))
    d = dispatcher(box, handler)
    d.start()
    await started.wait()
    await d.stop(grace=0.5)
    assert (await box.get(1))["state"] == DONE  # type: ignore[index]
    row = await box.get(2)
    assert row is not None and row["state"] == "pending" and row["lease_owner"] is None
    assert row["attempts"] == 0


async def test_leases_are_renewed_during_long_work(box: Inbox) -> None:
    box.lease_seconds = 0.6
    other = Inbox(box.engine, owner="other", lease_seconds=5)
    done = asyncio.Event()

    async def handler(item: InboxItem) -> Outcome:
        await done.wait()
        return Outcome(DONE)

    await add(box, (1, "a"))
    d = dispatcher(box, handler, lease_seconds=0.6)
    d.start()
    await until(lambda: _leased(box, 1))
    for _ in range(10):  # 2 s, over three lease periods: never claimable by another owner
        assert await other.claim(5) == []
        await asyncio.sleep(0.2)
    done.set()
    await until(lambda: _done(box, 1))
    await d.stop(1)


async def _leased(box: Inbox, update_id: int) -> bool:
    row = await box.get(update_id)
    return row is not None and row["lease_owner"] == "me"
