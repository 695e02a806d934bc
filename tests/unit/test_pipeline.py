"""The pipeline's step logic with in-memory fakes for the User Service and delivery.

What is checked here is the bookkeeping: which steps run, which are skipped on resume, which
failures become retry-queue rows, and what reaches the agent and the outbox. The real services
are exercised by the integration and end-to-end suites.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.agent_client import AgentClient
from app.delivery import DeliveredJob
from app.errors import Unavailable, UserServiceError, Verdict, classify
from app.inbound.ingest import classify_update
from app.metrics import Metrics
from app.processing.callback_acker import CallbackAcker
from app.processing.cancel import Cancellations
from app.processing.history import History
from app.processing.keyboards import InMemoryCallbackStore
from app.processing.pipeline import Pipeline
from app.processing.streaming import StreamConfig, Streamer
from app.storage.engine import make_engine
from app.storage.inbox import DONE, IGNORED, Inbox, InboxItem, NewUpdate
from app.storage.migrate import create_schema
from app.storage.retry_queue import RetryQueue
from app.telegram_client import TelegramClient
from tests.support.fakes import FakeDelivery, FakeUserService, NoPreviews

SAMPLES = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "data/telegram/updates.jsonl").read_text().splitlines()
]


class Env:
    def __init__(self, engine: Any) -> None:
        self.users = FakeUserService()
        self.delivery = FakeDelivery()
        self.inbox = Inbox(engine, owner="t", lease_seconds=30)
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._telegram))
        self.telegram_calls: list[str] = []
        self.queue = RetryQueue(engine, self.users)
        self.history = History(self.users, self.queue)
        telegram = TelegramClient(self.http, "1:test", base="http://tg.invalid")
        self.acker = CallbackAcker(telegram, self.inbox)
        agent = AgentClient(self.http, None, timeout=5)
        self.pipeline = Pipeline(
            inbox=self.inbox,
            users=self.users,
            agent=agent,
            history=self.history,
            delivery=self.delivery,
            callbacks=InMemoryCallbackStore(),
            metrics=Metrics(),
            answer_callback=self.acker.answer_once,
            streamer=Streamer(
                agent, NoPreviews(), self.delivery.typing, Cancellations(), StreamConfig("off")
            ),
        )

    def _telegram(self, request: httpx.Request) -> httpx.Response:
        self.telegram_calls.append(request.url.path.rsplit("/", 1)[-1])
        return httpx.Response(200, json={"ok": True, "result": True})

    async def run(self, update: dict[str, Any]) -> tuple[str, InboxItem]:
        row = classify_update(update)
        assert row is not None
        await self.inbox.add_many(
            [NewUpdate(row.update_id, row.chat_key, row.kind, json.dumps(update))]
        )
        [item] = [i for i in await self.inbox.claim(100) if i.update_id == update["update_id"]]
        outcome = await self.pipeline.process(item)
        await self.inbox.finish(item.seq, outcome.state, outcome.note)
        return outcome.state, item


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    await create_schema(engine)
    e = Env(engine)
    yield e
    await e.http.aclose()
    await engine.dispose()


def text_update(update_id: int, text: str, message_id: int = 10, user: int = 42) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": user, "is_bot": False, "first_name": "An"},
            "chat": {"id": user, "first_name": "An", "type": "private"},
            "date": 1700000000,
            "text": text,
        },
    }


async def test_new_user_full_flow(env: Env) -> None:
    state, _ = await env.run(text_update(1, "hello"))
    assert state == DONE
    assert env.users.users[42]["id"] == "u42"
    [row] = env.users.rows
    assert row["direction"] == "in" and row["message_text"] == "hello"
    assert row["telegram_message_id"] == 10 and row["chat_id"] == 42
    assert "raw" not in row["metadata"] and row["metadata"]["update_id"] == 1
    [job] = env.delivery.jobs
    assert job["job_key"] == "reply:1" and "hello" in job["text"]
    assert job["history"]["user_id"] == "u42"
    assert env.delivery.typing_chats == [42]


async def test_resume_skips_done_steps(env: Env) -> None:
    update = text_update(2, "again")
    row = classify_update(update)
    assert row is not None
    await env.inbox.add_many([NewUpdate(2, row.chat_key, row.kind, json.dumps(update))])
    [item] = await env.inbox.claim(1)
    item.progress = {
        "user": {"id": "u42"},
        "in_logged": True,
        "reply": {"text": "remembered", "actions": [], "source": "agent"},
    }
    outcome = await env.pipeline.process(item)
    assert outcome.state == DONE
    assert env.users.rows == []  # no second inbound row
    assert [j["text"] for j in env.delivery.jobs] == ["remembered"]  # agent not asked again


async def test_duplicate_in_history_is_not_answered(env: Env) -> None:
    env.users.users[42] = {"id": "u42"}
    await env.users.log_interaction("u42", "hello", "in", 10)
    state, _ = await env.run(text_update(3, "hello", message_id=10))
    assert state == DONE
    assert env.delivery.jobs == []
    assert len(env.users.rows) == 1


async def test_history_write_failure_goes_to_retry_queue(env: Env) -> None:
    env.users.users[42] = {"id": "u42"}
    env.users.fail_log = UserServiceError("down", status=503)
    state, _ = await env.run(text_update(4, "queued please", message_id=11))
    assert state == DONE  # the reply still goes out
    assert len(env.delivery.jobs) == 1
    assert await env.queue.size() == 1
    env.users.fail_log = None
    assert await env.queue.flush() == 1
    assert await env.queue.size() == 0
    assert env.users.rows[-1]["message_text"] == "queued please"


async def test_user_service_outage_is_an_outage(env: Env) -> None:
    env.users.fail_lookup = UserServiceError("down", status=None)
    with pytest.raises(UserServiceError) as info:
        await env.run(text_update(5, "x"))
    assert classify(info.value) is Verdict.OUTAGE
    assert classify(Unavailable()) is Verdict.OUTAGE
    assert classify(UserServiceError("bad", status=500)) is Verdict.FAILURE
    assert classify(ValueError()) is Verdict.FAILURE


async def test_edited_message_recorded_not_answered(env: Env) -> None:
    edit = text_update(6, "edited text")
    edit["edited_message"] = edit.pop("message")
    state, _ = await env.run(edit)
    assert state == DONE
    [row] = env.users.rows
    assert row["message_text"] == "edited text" and row["telegram_message_id"] is None
    assert env.delivery.jobs == []


async def test_callback_is_answered_and_data_goes_to_agent(env: Env) -> None:
    [sample] = [s["update"] for s in SAMPLES if s["kind"] == "callback_query"][:1]
    state, _ = await env.run(sample)
    assert state == DONE
    assert "answerCallbackQuery" in env.telegram_calls
    data = sample["callback_query"]["data"]
    assert env.users.rows[0]["message_text"] == data
    assert env.users.rows[0]["telegram_message_id"] is None
    assert data in env.delivery.jobs[0]["text"]


async def test_sticker_described_and_kind_recorded(env: Env) -> None:
    sample = next(
        s["update"]
        for s in SAMPLES
        if s["kind"] == "sticker"
        and "message" in s["update"]
        and s["update"]["message"]["chat"]["type"] == "private"
    )
    state, _ = await env.run(sample)
    assert state == DONE
    row = env.users.rows[0]
    assert row["message_text"].startswith("[sticker")
    assert row["metadata"]["gateway"]["media"] == "sticker"


async def test_unsupported_kinds_are_ignored(env: Env) -> None:
    sample = next(s["update"] for s in SAMPLES if s["kind"] == "new_chat_members")
    state, _ = await env.run(sample)
    assert state == IGNORED
    assert env.users.rows == [] and env.delivery.jobs == []


async def test_agent_context_is_earlier_history_oldest_first(env: Env) -> None:
    sent: list[dict[str, Any]] = []

    def agent(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"reply": "ok"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(agent)) as http:
        env.pipeline.agent = env.pipeline.streamer.agent = AgentClient(
            http, "http://agent.invalid", timeout=5
        )
        await env.run(text_update(20, "first", message_id=1))
        # what delivery's hook would write for the reply
        await env.users.log_interaction("u42", "ok", "out", 2)
        await env.run(text_update(21, "second", message_id=3))
    assert sent[0]["history"] == []  # the message being answered is not its own context
    assert [h["text"] for h in sent[1]["history"]] == ["first", "ok"]
    assert sent[1]["text"] == "second"


class Killed(BaseException):
    """A kill -9 at a chosen point: nothing after it runs, nothing is cleaned up."""


async def _run_killed_after_inbound_write(env: Env, update: dict[str, Any]) -> InboxItem:
    """Process `update` and die right after its inbound row is written, before the step is
    saved; then hand the update back as an expired lease would. Returns the re-claimed item."""
    row = classify_update(update)
    assert row is not None
    await env.inbox.add_many([NewUpdate(row.update_id, row.chat_key, row.kind, json.dumps(update))])
    [item] = await env.inbox.claim(10)
    real_save = env.inbox.save_progress

    async def save_then_die(seq: int, progress: dict[str, Any]) -> None:
        if progress.get("in_logged"):
            raise Killed
        await real_save(seq, progress)

    env.inbox.save_progress = save_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await env.pipeline.process(item)
    env.inbox.save_progress = real_save  # type: ignore[method-assign]
    await env.inbox.release([item.seq])  # the dead worker's lease runs out
    [again] = await env.inbox.claim(10)
    assert again.update_id == item.update_id and again.attempts == 0
    return again


async def test_kill_after_inbound_write_still_answers_once(env: Env) -> None:
    """Bug 1 of the chaos run: the resumed update found its own inbound row, took it for a
    duplicate and was never answered."""
    again = await _run_killed_after_inbound_write(env, text_update(70, "answer me", message_id=7))
    outcome = await env.pipeline.process(again)
    assert outcome.state == DONE and outcome.note is None
    assert [r["message_text"] for r in env.users.rows] == ["answer me"]  # written once
    [job] = env.delivery.jobs
    assert job["job_key"] == "reply:70" and "answer me" in job["text"]


async def test_kill_after_inbound_write_of_a_button_press_writes_once(env: Env) -> None:
    """A press has no message id to dedupe by: the resumed run finds its row by update id."""
    [sample] = [s["update"] for s in SAMPLES if s["kind"] == "callback_query"][:1]
    again = await _run_killed_after_inbound_write(env, sample)
    outcome = await env.pipeline.process(again)
    assert outcome.state == DONE
    assert len(env.users.rows) == 1
    assert len(env.delivery.jobs) == 1


async def test_a_row_written_by_another_gateway_is_still_a_duplicate(env: Env) -> None:
    """Same update id, but this run never got past the user step: someone else wrote it."""
    env.users.users[42] = {"id": "u42"}
    await env.users.log_interaction("u42", "seen before", "in", 12, {"update_id": 71}, 42)
    state, _ = await env.run(text_update(71, "seen before", message_id=12))
    assert state == DONE
    assert env.delivery.jobs == [] and len(env.users.rows) == 1


async def test_outbound_hook_rerun_does_not_write_twice(env: Env) -> None:
    history = {"user_id": "u42", "chat_id": 42, "message_text": "hi", "metadata": {}}
    job = DeliveredJob(1, "reply:9", 42, [501], ["hi"], history, 0.0)
    await env.history.on_delivered(job)
    assert len(env.users.rows) == 1
    # The process died after the write, before the job was marked recorded: the hook runs again.
    rerun = DeliveredJob(1, "reply:9", 42, [501], ["hi"], history, 0.0, maybe_done=True)
    await env.history.on_delivered(rerun)
    assert len(env.users.rows) == 1
