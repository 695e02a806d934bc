"""Bot-wide pacing shared by replicas (`SharedPacer`), on a real PostgreSQL database.

Telegram's ~30 messages/s is per bot, not per process: N replicas must together stay under it.
Each "replica" here is an engine of its own with its own `SharedPacer`, as in N processes. The
checks are on the slots the database hands out (exact: atomic reservations never overlap) and on
the moments the sends were released (a sliding window never holds more than the rate plus the
burst), plus the fallback: a database that does not answer must not hold sends up.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.delivery import DeliveryConfig
from app.delivery.pacing import Pacer, SharedPacer
from app.delivery.scheduler import Scheduler
from app.storage.engine import make_engine
from app.storage.migrate import create_schema
from tests.support.pg import temp_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def engines() -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one fresh database: two replicas' connection pools."""
    with temp_database("pacing") as url:
        first, second = make_engine(url, pool_size=2), make_engine(url, pool_size=2)
        await create_schema(first)
        yield first, second
        await first.dispose()
        await second.dispose()


async def test_reservations_from_two_replicas_never_share_a_slot(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Slots reserved concurrently by two processes are exactly one interval apart: the single
    UPDATE ... RETURNING is atomic, so no two sends are given the same moment."""
    rate = 200.0
    pacers = [SharedPacer(e, "4242", rate) for e in engines]

    async def reserve_many(p: SharedPacer) -> list[float]:
        return [(await p.reserve())[0] for _ in range(40)]

    try:
        results = await asyncio.gather(*(reserve_many(p) for p in pacers))
    finally:
        for p in pacers:
            await p.aclose()
    slots = sorted(results[0] + results[1])
    assert len(slots) == 80
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) == pytest.approx(1 / rate, abs=1e-6)
    assert max(gaps) < 1 / rate + 0.05  # no reservation skipped far ahead either


async def test_two_replicas_together_stay_under_the_bot_rate(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Two pacers sending as fast as they are let: in any 0.5 s window, all sends together
    stay within rate x window + burst (one send of slack for the timer's jitter)."""
    rate, burst = 40.0, 2
    pacers = [SharedPacer(e, "4242", rate, burst=burst) for e in engines]
    released: list[float] = []

    async def send_many(p: SharedPacer) -> None:
        for _ in range(24):
            await p.acquire()
            released.append(time.monotonic())

    try:
        await asyncio.gather(*(send_many(p) for p in pacers))
    finally:
        for p in pacers:
            await p.aclose()
    assert all(p.fallbacks == 0 for p in pacers)
    released.sort()
    window = 0.5
    busiest = max(sum(1 for t in released if start <= t < start + window) for start in released)
    assert busiest <= rate * window + burst + 1, busiest
    # Per process, each would have been allowed the whole rate: together they did not take 2x.
    span = released[-1] - released[0]
    assert len(released) / max(span, 1e-9) < 1.5 * rate


async def test_a_separate_bot_has_a_pace_of_its_own(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    first, _ = engines
    a, b = SharedPacer(first, "1", 10.0), SharedPacer(first, "2", 10.0)
    try:
        slot_a, now_a = await a.reserve()
        slot_b, now_b = await b.reserve()
        assert slot_a == pytest.approx(now_a, abs=0.01)
        assert slot_b == pytest.approx(now_b, abs=0.01)  # not queued behind bot 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_stalled_database_falls_back_to_local_pacing(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Another transaction holds the bot's row: the reservation times out, the send goes out
    on the local pacer, and the next sends stay local for a while (no timeout per send)."""
    first, second = engines
    pacer = SharedPacer(first, "4242", 30.0, timeout=0.2, fallback_seconds=60)
    await pacer.reserve()  # the row exists
    async with second.begin() as blocker:
        await blocker.execute(
            text("SELECT tat FROM delivery_bot_pacing WHERE bot_id = '4242' FOR UPDATE")
        )
        await asyncio.wait_for(pacer.acquire(), timeout=5)
        assert pacer.fallbacks == 1
        await asyncio.wait_for(pacer.acquire(), timeout=5)
        assert pacer.fallbacks == 1  # still local: the stalled database was not asked again
    await pacer.aclose()


async def test_an_unreachable_database_falls_back_to_local_pacing() -> None:
    """Nothing listens on the port: the pacer's connect fails and the send is paced locally."""
    engine = make_engine("postgresql://postgres@127.0.0.1:9/none", pool_size=1)
    pacer = SharedPacer(engine, "4242", 30.0, timeout=2.0)
    try:
        await asyncio.wait_for(pacer.acquire(), timeout=10)
        assert pacer.fallbacks == 1
    finally:
        await pacer.aclose()
        await engine.dispose()


async def test_the_scheduler_shares_the_pace_on_postgres_only(
    engines: tuple[AsyncEngine, AsyncEngine], tmp_path: Path
) -> None:
    async def noop(*_: object) -> None:
        return None

    unused: Any = None  # the pacer is chosen in the constructor; nothing else is touched

    def scheduler(engine: AsyncEngine, config: DeliveryConfig) -> Scheduler:
        return Scheduler(
            engine, unused, config, unused, unused, "o", on_outcome=noop, periodic=noop
        )

    pg = scheduler(engines[0], DeliveryConfig(bot_id="77"))
    assert isinstance(pg.pacer, SharedPacer)
    assert pg.pacer.bot_id == "77"
    assert isinstance(scheduler(engines[0], DeliveryConfig(shared_pacing=False)).pacer, Pacer)
    sqlite = make_engine(f"sqlite:///{tmp_path}/{uuid.uuid4().hex[:6]}.db")
    try:
        assert isinstance(scheduler(sqlite, DeliveryConfig()).pacer, Pacer)
    finally:
        await sqlite.dispose()
