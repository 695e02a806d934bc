"""Drain a backlog through the delivery engine against a rate-limiting Telegram stand-in.

Prints the achieved send rate against the configured global limit (goal: at least 90%, with
zero 429s caused by our own pacing), peak Python memory while draining (tracemalloc) and
process RSS, and, in the same run, a naive baseline: one sendMessage after another, sleeping
`retry_after` whenever Telegram answers 429 (what a bot does without a scheduler).

    .venv/bin/python bench/delivery_drain.py [--messages 600] [--chats 200]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app.delivery.tables  # noqa: E402, F401
from app.delivery import Delivery  # noqa: E402
from app.errors import Verdict, classify  # noqa: E402
from app.storage.engine import make_engine  # noqa: E402
from app.storage.migrate import create_schema  # noqa: E402
from app.telegram_client import TelegramClient, TelegramClientError  # noqa: E402
from tests.delivery.conftest import TOKEN, make_config  # noqa: E402
from tests.delivery.standin import StandIn  # noqa: E402


def _rss_mib() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


async def scheduler_memory(messages: int, chats: int) -> tuple[float, int]:
    """tracemalloc peak of the scheduler's in-memory state for a backlog already in the DB.

    Traces only the refill (lease the chats, load their heads), which is where memory would
    grow with the backlog; tracing the whole drain would slow it several-fold.
    """
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/mem.db"
        config = make_config()
        engine = make_engine(url, sqlite_synchronous="OFF")
        await create_schema(engine)
        d = Delivery(engine, _NoTelegram(), config, CollectorRegistry(), "mem")
        for key, chat, text in backlog(messages, chats):
            await d.enqueue(key, chat, text)
        d.scheduler.started = True  # adopt without starting the sender loop
        tracemalloc.start()
        for _ in range(10):  # as many refills as it takes to fill the active set
            await d.scheduler._refill()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        held = len(d.scheduler.chats)
        await engine.dispose()
    return peak / 2**20, held


class _NoTelegram:
    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the client's interface
    ) -> dict[str, Any]:
        raise AssertionError("not used")


def backlog(messages: int, chats: int) -> list[tuple[str, int, str]]:
    # Replies arrive chat after chat (each chat's replies together): the worst order for a
    # FIFO sender, since consecutive messages hit the same chat's 1/s limit.
    per_chat = messages // chats
    return [
        (f"bench:{c}:{n}", 10_000 + c, f"reply {n} to chat {c}")
        for c in range(chats)
        for n in range(per_chat)
    ]


async def engine_drain(messages: int, chats: int) -> dict[str, float]:
    standin = StandIn().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            config = make_config(POLL_INTERVAL=0.5)
            engine = make_engine(url, sqlite_synchronous="NORMAL")
            await create_schema(engine)
            async with httpx.AsyncClient() as http:
                tg = TelegramClient(http, TOKEN, standin.base, 10)
                d = Delivery(engine, tg, config, CollectorRegistry(), "bench")
                items = backlog(messages, chats)
                for key, chat, text in items:  # the backlog is in the database first
                    await d.enqueue(key, chat, text)
                rss_base = _rss_mib()
                peak_rss = [rss_base]

                async def sample() -> None:
                    while True:
                        peak_rss[0] = max(peak_rss[0], _rss_mib())
                        await asyncio.sleep(0.05)

                sampler = asyncio.create_task(sample())
                started = time.monotonic()
                await d.start()
                await asyncio.gather(*(d.wait(k, timeout=120) for k, _, _ in items))
                elapsed = time.monotonic() - started
                sampler.cancel()
                await d.stop(5)
            await engine.dispose()
        return {
            "sent": len(standin.messages),
            "seconds": elapsed,
            "rate": len(standin.messages) / elapsed,
            "pacing_429": standin.pacing_429s(),
            "rss_base": rss_base,
            "rss_peak": peak_rss[0],
            "limit": config.rate_global_per_second,
            "burst": standin.global_burst,
        }
    finally:
        standin.stop()


async def naive_drain(messages: int, chats: int) -> dict[str, float]:
    standin = StandIn().start()
    try:
        async with httpx.AsyncClient() as http:
            tg = TelegramClient(http, TOKEN, standin.base, 10)
            started = time.monotonic()
            for _, chat, text in backlog(messages, chats):
                while True:
                    try:
                        await tg.call("sendMessage", {"chat_id": chat, "text": text})
                        break
                    except TelegramClientError as exc:
                        if classify(exc) is not Verdict.RATE_LIMITED:
                            raise
                        await asyncio.sleep(exc.retry_after or 1)
            elapsed = time.monotonic() - started
        return {
            "sent": len(standin.messages),
            "seconds": elapsed,
            "rate": len(standin.messages) / elapsed,
            "pacing_429": standin.pacing_429s(),
        }
    finally:
        standin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--chats", type=int, default=200)
    args = parser.parse_args()
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    eng = asyncio.run(engine_drain(args.messages, args.chats))
    mem_small, held_small = asyncio.run(scheduler_memory(args.messages, args.chats))
    mem_big, held_big = asyncio.run(scheduler_memory(2_500, 2_500))
    naive = asyncio.run(naive_drain(args.messages, args.chats))
    # With a full bucket of `burst` at the start, the ideal drain time is (n - burst) / rate.
    ideal = (eng["sent"] - eng["burst"]) / eng["limit"]
    print(f"backlog: {args.messages} messages to {args.chats} chats")
    print(
        f"engine : {eng['sent']:.0f} sent in {eng['seconds']:.2f}s = {eng['rate']:.1f} msg/s "
        f"({100 * eng['rate'] / eng['limit']:.0f}% of the {eng['limit']:.0f}/s limit; "
        f"{100 * ideal / eng['seconds']:.0f}% of the ideal drain time {ideal:.1f}s), "
        f"429 from pacing: {eng['pacing_429']:.0f}"
    )
    print(
        f"naive  : {naive['sent']:.0f} sent in {naive['seconds']:.2f}s = {naive['rate']:.1f} msg/s "
        f"({100 * naive['rate'] / eng['limit']:.0f}% of the limit), "
        f"429 received: {naive['pacing_429']:.0f}"
    )
    print(
        f"memory : RSS while draining {eng['rss_base']:.0f} -> peak {eng['rss_peak']:.0f} MiB; "
        f"scheduler state (tracemalloc peak of refills): {mem_small:.2f} MiB holding "
        f"{held_small} chats for this backlog, {mem_big:.2f} MiB holding {held_big} chats for "
        f"2500 messages to 2500 chats (bound: 1000 chats x one head part, whatever the backlog)"
    )
    ok = eng["pacing_429"] == 0 and eng["rate"] >= 0.9 * eng["limit"]
    print("result :", "OK" if ok else "BELOW GOAL")


if __name__ == "__main__":
    main()
