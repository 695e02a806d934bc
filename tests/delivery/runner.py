"""A delivery process for the kill -9 test: enqueue one long reply, deliver it, exit 0.

Env: DATABASE_URL, TELEGRAM_API_BASE, CHAT_ID, PARTS (number of ~4000-char parts), OWNER.
Run it again after a crash: enqueue is idempotent on the job key, so it only resumes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

import app.delivery.tables  # noqa: F401
from app.delivery import Delivery
from app.storage.engine import make_engine
from app.storage.migrate import create_schema
from app.telegram_client import TelegramClient
from tests.delivery.conftest import TOKEN, make_config


def long_text(parts: int) -> str:
    return "\n\n".join(f"PART{i} " + "filler text. " * 300 for i in range(parts))


async def main() -> int:
    base = os.environ["TELEGRAM_API_BASE"]
    url = os.environ["DATABASE_URL"]
    chat_id = int(os.environ.get("CHAT_ID", "77"))
    parts = int(os.environ.get("PARTS", "3"))
    # Burst 1: parts go out one second apart, so the test can kill between two of them.
    config = make_config(RATE_CHAT_BURST=1, RATE_CHAT_PER_SECOND=1)
    engine = make_engine(url)
    await create_schema(engine)
    async with httpx.AsyncClient() as http:
        tg = TelegramClient(http, TOKEN, base, config.request_timeout)

        def lane_telegram() -> tuple[TelegramClient, Any]:
            lane_http = httpx.AsyncClient()
            client = TelegramClient(lane_http, TOKEN, base, config.request_timeout)
            return client, lane_http.aclose

        owner = os.environ.get("OWNER", "runner")
        d = Delivery(engine, tg, config, CollectorRegistry(), owner, lane_telegram=lane_telegram)
        await d.start()
        await d.enqueue("reply:kill-test", chat_id, long_text(parts))
        result = await d.wait("reply:kill-test", timeout=60)
        await d.stop(5)
    await engine.dispose()
    print(result.state, result.message_ids, flush=True)
    return 0 if result.delivered else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
