"""Persistence and claims, on SQLite and PostgreSQL: replicas, lease takeover, kill -9."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.delivery.tables import delivery_chats, delivery_parts
from app.storage.engine import now
from tests.delivery.conftest import Factory
from tests.delivery.runner import long_text
from tests.delivery.standin import StandIn
from tests.support.servers import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize(
        "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
]


async def test_two_replicas_send_each_part_once_in_order(
    standin: StandIn, make_delivery: Factory
) -> None:
    # Each replica takes half of Telegram's global budget (see docs/delivery.md).
    a = await make_delivery(owner="replica-a", RATE_GLOBAL_PER_SECOND=15)
    b = await make_delivery(owner="replica-b", RATE_GLOBAL_PER_SECOND=15)
    chats = list(range(500, 520))
    keys = []
    for n in range(5):
        for c in chats:
            key = f"r:{c}:{n}"
            keys.append(key)
            await (a if (c + n) % 2 else b).enqueue(key, c, f"{c}/{n}")
    results = await asyncio.gather(*(a.wait(k, timeout=60) for k in keys))
    assert all(r.delivered for r in results)
    sent = Counter(m["text"] for m in standin.messages)
    assert len(sent) == 100 and set(sent.values()) == {1}
    for c in chats:
        assert standin.texts(c) == [f"{c}/{n}" for n in range(5)]
    assert standin.pacing_429s() == 0
    # both replicas did part of the work
    a_sent = a.registry.get_sample_value("delivery_sent_total") or 0
    b_sent = b.registry.get_sample_value("delivery_sent_total") or 0
    assert a_sent + b_sent == 100 and a_sent > 0 and b_sent > 0


async def test_live_lease_respected_expired_lease_taken_over(
    standin: StandIn, make_delivery: Factory, db_engine: AsyncEngine
) -> None:
    d = await make_delivery(owner="survivor", start=False)
    await d.enqueue("held", 600, "held by a live process")
    await d.enqueue("dead", 601, "held by a dead process")
    async with db_engine.begin() as conn:
        await conn.execute(
            update(delivery_chats)
            .where(delivery_chats.c.chat_id == 600)
            .values(lease_owner="other", lease_expires_at=now() + 1.5)
        )
        await conn.execute(
            update(delivery_chats)
            .where(delivery_chats.c.chat_id == 601)
            .values(lease_owner="crashed", lease_expires_at=now() - 1)
        )
    started = time.monotonic()
    await d.start()
    assert (await d.wait("dead", timeout=5)).delivered
    assert standin.texts(600) == []
    assert (await d.wait("held", timeout=10)).delivered
    assert time.monotonic() - started >= 1.4


async def test_restart_does_not_resend_recorded_parts(
    standin: StandIn, make_delivery: Factory, db_engine: AsyncEngine
) -> None:
    d1 = await make_delivery(owner="p1", RATE_CHAT_BURST=1)
    await d1.enqueue("multi", 700, long_text(3))
    for _ in range(200):
        async with db_engine.connect() as conn:
            states = (
                (await conn.execute(select(delivery_parts.c.state).order_by(delivery_parts.c.seq)))
                .scalars()
                .all()
            )
        if states and states[0] == "sent":
            break
        await asyncio.sleep(0.02)
    await d1.stop(0)
    assert len(standin.texts(700)) < 3
    d2 = await make_delivery(owner="p2")
    r = await d2.wait("multi", timeout=20)
    assert r.delivered and len(r.message_ids) == 3
    texts = standin.texts(700)
    assert [t.split()[0] for t in texts] == ["PART0", "PART1", "PART2"]


def _part_states(url: str) -> list[str]:
    async def go() -> list[str]:
        from app.storage.engine import make_engine

        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(delivery_parts.c.state).order_by(delivery_parts.c.seq)
                )
                return [str(s) for s in rows.scalars()]
        except Exception:
            return []
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_kill_9_mid_send_resumes_without_duplicates(
    standin: StandIn, db_url: str, tmp_path: object
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "TELEGRAM_API_BASE": standin.base,
        "CHAT_ID": "77",
        "PARTS": "4",
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "tests.delivery.runner"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = _part_states(db_url)
            if states and states[0] == "sent":
                break
            time.sleep(0.02)
        else:
            raise AssertionError("part 1 was never recorded")
        proc.kill()  # SIGKILL: no shutdown code runs
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = standin.texts(77)
    assert 1 <= len(before) < 4, len(before)
    done = subprocess.run(argv, cwd=ROOT, env=env, timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    texts = standin.texts(77)
    assert [t.split()[0] for t in texts] == ["PART0", "PART1", "PART2", "PART3"]
    assert _part_states(db_url) == ["sent"] * 4
