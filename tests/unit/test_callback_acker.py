"""A pressed button's callback query is answered exactly once: by the early acker or by the
pipeline, in whichever process gets there first (seen twice against a third-party emulator)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.inbound.ingest import classify_update
from app.processing.callback_acker import CallbackAcker
from app.storage.engine import make_engine
from app.storage.inbox import Inbox, NewUpdate
from app.storage.migrate import create_schema
from app.telegram_client import TelegramClient


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await create_schema(eng)
    yield eng
    await eng.dispose()


def press(update_id: int, query_id: str) -> NewUpdate:
    update = {
        "update_id": update_id,
        "callback_query": {
            "id": query_id,
            "from": {"id": 5, "is_bot": False, "first_name": "P"},
            "chat_instance": "c",
            "data": "yes",
            "message": {"message_id": 9, "chat": {"id": 5, "type": "private"}, "date": 1},
        },
    }
    row = classify_update(update)
    assert row is not None
    return NewUpdate(row.update_id, row.chat_key, row.kind, json.dumps(update))


async def test_acker_and_pipeline_and_replicas_answer_each_query_once(engine: AsyncEngine) -> None:
    answered: list[str] = []

    async def telegram(request: httpx.Request) -> httpx.Response:
        answered.append(json.loads(request.content)["callback_query_id"])
        await asyncio.sleep(0.01)  # a real round trip, so that the askers overlap
        return httpx.Response(200, json={"ok": True, "result": True})

    inbox = Inbox(engine, owner="a", lease_seconds=30)
    rows = [press(700 + n, f"q{n}") for n in range(20)]
    await inbox.add_many(rows)
    async with httpx.AsyncClient(transport=httpx.MockTransport(telegram)) as http:
        client = TelegramClient(http, "1:test", base="http://tg.invalid")
        # Two processes' ackers (the replica that took the webhook, and another one).
        ackers = [CallbackAcker(client, Inbox(engine, owner=o, lease_seconds=30)) for o in "ab"]
        for acker in ackers:
            acker.start()
            acker.on_commit(rows)
        # ...while the pipelines reach the same updates and ask too.
        await asyncio.gather(
            *(ackers[n % 2].answer_once(row.update_id, f"q{n}") for n, row in enumerate(rows)),
            *(ackers[1 - n % 2].answer_once(row.update_id, f"q{n}") for n, row in enumerate(rows)),
        )
        async with asyncio.timeout(5):
            while len(answered) < len(rows):
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # anything late would show now
        for acker in ackers:
            await acker.stop()
    assert sorted(answered) == sorted(f"q{n}" for n in range(20))  # each exactly once
