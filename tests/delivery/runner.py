"""A delivery process for the kill -9 test: enqueue one long reply, deliver it, exit 0.

Env: DATABASE_URL, TELEGRAM_API_BASE, CHAT_ID, PARTS (number of ~4000-char parts), OWNER.
Run it again after a crash: enqueue is idempotent on the job key, so it only resumes.
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
from prometheus_client import CollectorRegistry

import app.delivery.tables  # noqa: F401
from app.db import create_schema, make_engine
from app.delivery import Delivery
from app.telegram_client import TelegramClient
from tests.delivery.conftest import TOKEN, make_settings


def long_text(parts: int) -> str:
    return "\n\n".join(f"PART{i} " + "filler text. " * 300 for i in range(parts))


async def main() -> int:
    base = os.environ["TELEGRAM_API_BASE"]
    url = os.environ["DATABASE_URL"]
    chat_id = int(os.environ.get("CHAT_ID", "77"))
    parts = int(os.environ.get("PARTS", "3"))
    # Burst 1: parts go out one second apart, so the test can kill between two of them.
    settings = make_settings(base, url, RATE_CHAT_BURST=1, RATE_CHAT_PER_SECOND=1)
    engine = make_engine(url)
    await create_schema(engine)
    async with httpx.AsyncClient() as http:
        tg = TelegramClient(http, TOKEN, base, settings.REQUEST_TIMEOUT)
        d = Delivery(engine, tg, settings, CollectorRegistry(), os.environ.get("OWNER", "runner"))
        await d.start()
        await d.enqueue("reply:kill-test", chat_id, long_text(parts))
        result = await d.wait("reply:kill-test", timeout=60)
        await d.stop(5)
    await engine.dispose()
    print(result.state, result.message_ids, flush=True)
    return 0 if result.delivered else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
