"""`app.storage.engine.WriteGate`: one SQLite writer at a time, urgent writers first, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from app.storage.engine import WriteGate, make_engine, write, write_gate


async def test_urgent_waiters_go_before_normal_ones() -> None:
    gate = WriteGate()
    order: list[str] = []
    await gate.acquire()

    async def take(name: str, urgent: bool) -> None:
        async with gate.hold(urgent=urgent):
            order.append(name)

    tasks = [asyncio.create_task(take(n, n.startswith("u"))) for n in ("n1", "n2", "u1", "n3")]
    await asyncio.sleep(0)  # all four are waiting now
    assert gate.waiting == 4
    gate.release()
    await asyncio.gather(*tasks)
    assert order == ["u1", "n1", "n2", "n3"]
    assert gate.waiting == 0
    await gate.acquire()  # free again: taken at once
    gate.release()


async def test_a_cancelled_waiter_neither_holds_nor_blocks_the_gate() -> None:
    gate = WriteGate()
    await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    after: list[str] = []

    async def later() -> None:
        async with gate.hold():
            after.append("ran")

    follower = asyncio.create_task(later())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release()
    await asyncio.wait_for(follower, 1)
    assert after == ["ran"]


async def test_a_waiter_cancelled_as_it_is_handed_the_gate_passes_it_on() -> None:
    gate = WriteGate()
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # hands the gate to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the gate went on to `second`, not lost
    gate.release()


async def test_one_gate_per_sqlite_engine_none_for_postgres(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/g.db")
    try:
        assert write_gate(engine) is write_gate(engine) is not None
        async with write(engine) as conn:
            assert conn.in_transaction()
    finally:
        await engine.dispose()
    pg = make_engine("postgresql://postgres@127.0.0.1:1/none")
    assert write_gate(pg) is None
    await pg.dispose()
