"""Conversation turns on SQLite and PostgreSQL: bursts in each TURN_MODE, debounce, albums,
interrupts, and a kill at every step of a collected turn (nothing lost, nothing twice)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.processing.turns import TurnConfig
from app.storage.engine import make_engine
from app.storage.inbox import DONE, PENDING
from app.storage.migrate import create_schema
from tests.support.pipeline_env import PipelineEnv, message, photo

Factory = Callable[..., PipelineEnv]


@pytest.fixture
async def make_env(database_url: str) -> AsyncIterator[Factory]:
    engine = make_engine(database_url)
    await create_schema(engine)
    envs: list[PipelineEnv] = []

    def make(**kw: Any) -> PipelineEnv:
        env = PipelineEnv(engine, **kw)
        envs.append(env)
        return env

    yield make
    for env in envs:
        await env.close()
    await engine.dispose()


async def test_queue_mode_answers_each_message_alone(make_env: Factory) -> None:
    env = make_env(turns=TurnConfig(mode="queue", debounce=1.0))
    await env.add(message(1, "a"), message(2, "b"), message(3, "c"))
    outcomes = await env.drain()
    assert [o.defer_until for o in outcomes] == [None, None, None]  # no debounce in queue mode
    assert [r["text"] for r in env.agent_requests] == ["a", "b", "c"]
    assert all("parts" not in r for r in env.agent_requests)
    assert [j["job_key"] for j in env.delivery.jobs] == ["reply:1", "reply:2", "reply:3"]


async def test_collect_merges_the_waiting_messages_into_one_turn(make_env: Factory) -> None:
    env = make_env()
    await env.add(message(10, "hi"), message(11, "one question"), message(12, "how do I pay?"))
    outcomes = await env.drain()
    assert len(outcomes) == 1 and outcomes[0].state == DONE
    [request] = env.agent_requests
    assert request["text"] == "hi\none question\nhow do I pay?"
    assert [(p["update_id"], p["message_id"], p["text"]) for p in request["parts"]] == [
        (10, 10, "hi"),
        (11, 11, "one question"),
        (12, 12, "how do I pay?"),
    ]
    assert request["message_id"] == 10 and request["history"] == []
    [job] = env.delivery.jobs
    assert job["job_key"] == "reply:10" and job["text"] == "re: hi | one question | how do I pay?"
    # Every message has its own inbound row, in order; every update is finished.
    assert env.inbound() == ["hi", "one question", "how do I pay?"]
    assert [r["telegram_message_id"] for r in env.users.rows] == [10, 11, 12]
    assert [r["metadata"]["update_id"] for r in env.users.rows] == [10, 11, 12]
    assert [r["metadata"]["gateway"].get("turn") for r in env.users.rows] == [None, 10, 10]
    assert await env.states() == {10: DONE, 11: DONE, 12: DONE}


async def test_debounce_waits_for_the_chat_to_be_quiet(make_env: Factory) -> None:
    env = make_env(turns=TurnConfig(debounce=1.0, max_wait=5.0))
    await env.add(message(20, "first"))
    done = await env.step()
    assert done is not None
    outcome, item = done
    assert outcome.state == PENDING and outcome.defer_until is not None
    assert outcome.defer_until == pytest.approx(item.received_at + 1.0, abs=0.01)
    assert env.agent_requests == [] and env.inbound() == ["first"]  # recorded at once
    # A second message inside the window moves the turn's due time.
    env.clock.advance(0.6)
    await env.add(message(21, "second"))
    outcome, _ = (await env.step()) or (None, None)  # type: ignore[assignment]
    assert outcome is not None and outcome.defer_until is not None
    assert outcome.defer_until > item.received_at + 1.0
    env.clock.advance(1.1)
    await env.drain()
    assert [r["text"] for r in env.agent_requests] == ["first\nsecond"]
    assert env.inbound() == ["first", "second"]


async def test_max_wait_caps_a_chat_that_never_goes_quiet(make_env: Factory) -> None:
    env = make_env(turns=TurnConfig(debounce=1.0, max_wait=2.0))
    await env.add(message(30, "m0"))
    item = await env.claim_head()
    assert item is not None
    await env.inbox.release([item.seq])
    env.clock.advance(3.0)  # the head is 3 s old; a new message just arrived
    await env.add(message(31, "m1"))
    await env.step()
    assert [r["text"] for r in env.agent_requests] == ["m0\nm1"]


async def test_a_turn_ends_at_a_command_or_a_button_or_another_sender(make_env: Factory) -> None:
    env = make_env()
    other = {"id": 43, "is_bot": False, "first_name": "Bo"}
    group = {"id": -100500, "type": "supergroup", "title": "Team"}
    await env.add(
        message(40, "@turns_bot a", chat=group),
        message(41, "b", chat=group),
        message(42, "c", chat=group, user=other),  # another sender: ends A's turn
        message(43, "@turns_bot d", chat=group),
    )
    await env.drain()
    assert [r["text"] for r in env.agent_requests] == ["a\nb", "d"]  # Bo was not addressed
    await env.add(message(50, "x"), message(51, "/help"), message(52, "y"))
    await env.drain()
    assert [r["text"] for r in env.agent_requests][2:] == ["x", "/help", "y"]


async def test_interrupt_cancels_the_agent_call_and_answers_everything(
    make_env: Factory,
) -> None:
    env = make_env(turns=TurnConfig(mode="interrupt"))
    env.agent_gate = asyncio.Event()
    await env.add(message(60, "draft one"))
    task = asyncio.create_task(env.step())
    await asyncio.wait_for(env.agent_called.wait(), 5)
    rows = await env.add(message(61, "no wait, this"))
    env.turns.on_commit(rows)  # what the ingest writer does after the commit

    # The first call was cancelled; the turn asks again with both messages.
    async def second_call() -> None:
        while len(env.agent_requests) < 2:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(second_call(), 5)
    env.agent_gate.set()
    done = await asyncio.wait_for(task, 5)
    assert done is not None and done[0].state == DONE and "interrupted" in done[0].steps
    assert [r["text"] for r in env.agent_requests] == ["draft one", "draft one\nno wait, this"]
    [job] = env.delivery.jobs
    assert job["job_key"] == "reply:60" and "no wait, this" in job["text"]
    assert env.inbound() == ["draft one", "no wait, this"]
    stored = await env.inbox.get(60)
    assert stored is not None and stored["progress"]["turn"]["interrupts"] == 1
    assert await env.states() == {60: DONE, 61: DONE}


async def test_collect_does_not_interrupt_a_running_call(make_env: Factory) -> None:
    env = make_env(turns=TurnConfig(mode="collect"))
    env.agent_gate = asyncio.Event()
    await env.add(message(70, "first"))
    task = asyncio.create_task(env.step())
    await asyncio.wait_for(env.agent_called.wait(), 5)
    env.turns.on_commit(await env.add(message(71, "second"), message(72, "third")))
    env.agent_gate.set()
    await task
    await env.drain()  # the waiting messages are the next turn, together
    assert [r["text"] for r in env.agent_requests] == ["first", "second\nthird"]
    assert [j["job_key"] for j in env.delivery.jobs] == ["reply:70", "reply:71"]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2, 0]])
async def test_an_album_is_one_turn_whatever_the_delivery_order(
    make_env: Factory, order: list[int]
) -> None:
    env = make_env(turns=TurnConfig(mode="queue", album_grace=1.0))
    items = [
        photo(80, message_id=500, caption="Our trip", media_group_id="alb1"),
        photo(81, message_id=501, media_group_id="alb1"),
        photo(82, message_id=502, caption="day two", media_group_id="alb1"),
    ]
    await env.add(items[order[0]])
    first = await env.step()
    assert first is not None and first[0].defer_until is not None  # the grace window
    await env.add(*(items[i] for i in order[1:]))
    await env.drain()
    [request] = env.agent_requests
    assert request["text"] == "Our trip\nday two"  # captions joined, in message order
    assert [p["message_id"] for p in request["parts"]] == [500, 501, 502]
    assert request["media_group_id"] == "alb1"
    assert [a["kind"] for a in request["attachments"]] == ["photo"] * 3
    assert [a["message_id"] for a in request["attachments"]] == [500, 501, 502]
    assert request["attachments"][0]["width"] == 1280  # the largest rendition
    assert request["attachments"][0]["url"].startswith("http://gw.test/files/AgAC80?exp=")
    assert len(env.delivery.jobs) == 1
    assert sorted(env.inbound()) == sorted(["Our trip", "[photo]", "day two"])


class Killed(BaseException):
    """A kill -9 at a chosen point: nothing after it runs, nothing is cleaned up."""


async def _collected_turn_killed_at(env: PipelineEnv, save_number: int) -> bool:
    """Run a three-message turn, dying at its `save_number`-th step record; then run it to the
    end as a restarted gateway would. True when the kill happened (the turn had that many)."""
    await env.add(message(90, "one"), message(91, "two"), message(92, "three"))
    real_save = env.inbox.save_progress
    saves = 0

    async def save_or_die(seq: int, progress: dict[str, Any]) -> None:
        nonlocal saves
        saves += 1
        if saves == save_number:
            raise Killed
        await real_save(seq, progress)

    env.inbox.save_progress = save_or_die  # type: ignore[method-assign]
    item = await env.claim_head()
    assert item is not None
    try:
        outcome = await env.pipeline.process(item)
    except Killed:
        killed = True
    else:
        killed = False
        await env.inbox.finish(item.seq, outcome.state, outcome.note)
    env.inbox.save_progress = real_save  # type: ignore[method-assign]
    if killed:
        await env.inbox.release([item.seq])  # the dead worker's lease runs out
    await env.drain()
    return killed


async def test_kill_at_every_step_of_a_collected_turn(make_env: Factory) -> None:
    """Whatever step a kill -9 lands after, each message is recorded once and the turn is
    answered once, under the same job key."""
    kills = 0
    for save_number in range(1, 12):
        env = make_env()
        killed = await _collected_turn_killed_at(env, save_number)
        kills += killed
        assert env.inbound() == ["one", "two", "three"], save_number
        assert [j["job_key"] for j in env.delivery.jobs] == ["reply:90"], save_number
        assert env.delivery.jobs[0]["text"] == "re: one | two | three", save_number
        assert await env.states() == {90: DONE, 91: DONE, 92: DONE}, save_number
        await env.inbox.engine.dispose()
        async with env.inbox.engine.begin() as conn:  # next round on an empty inbox
            from sqlalchemy import text

            await conn.execute(text("DELETE FROM inbox"))
    assert kills >= 6  # user, head row, members, each member row, reply, enqueued


async def test_kill_after_the_followers_are_finished(make_env: Factory) -> None:
    env = make_env()
    await env.add(message(95, "p"), message(96, "q"))
    real = env.inbox.finish_followers

    async def finish_then_die(*args: Any, **kwargs: Any) -> None:
        await real(*args, **kwargs)
        raise Killed

    env.inbox.finish_followers = finish_then_die  # type: ignore[method-assign]
    item = await env.claim_head()
    assert item is not None
    with pytest.raises(Killed):
        await env.pipeline.process(item)
    env.inbox.finish_followers = real  # type: ignore[method-assign]
    await env.inbox.release([item.seq])
    await env.drain()
    assert env.inbound() == ["p", "q"] and len(env.delivery.jobs) == 1
    assert len(env.agent_requests) == 1
    assert await env.states() == {95: DONE, 96: DONE}


async def test_a_follower_already_in_the_history_is_left_out(make_env: Factory) -> None:
    """The second dedupe layer per message: a follower some other gateway recorded (a lost
    database) is not answered again, the rest of the turn is."""
    env = make_env()
    env.users.users[42] = {"id": "u42"}
    await env.users.log_interaction("u42", "old", "in", 101, {"update_id": 5}, 42)
    await env.add(message(100, "new one"), message(101, "old"), message(102, "another"))
    await env.drain()
    [request] = env.agent_requests
    assert [p["text"] for p in request["parts"]] == ["new one", "another"]
    assert env.inbound() == ["old", "new one", "another"]
    assert await env.states() == {100: DONE, 101: DONE, 102: DONE}


async def test_message_id_zero_is_never_a_key(make_env: Factory) -> None:
    """Bot API 10.2: ephemeral messages all have message_id 0; they are not duplicates of each
    other, and nothing quotes or sorts by a 0."""
    env = make_env(turns=TurnConfig(mode="queue"))
    await env.add(message(110, "eph one", message_id=0), message(111, "eph two", message_id=0))
    await env.drain()
    assert [r["text"] for r in env.agent_requests] == ["eph one", "eph two"]
    assert [r["telegram_message_id"] for r in env.users.rows if r["direction"] == "in"] == [
        None,
        None,
    ]
    assert len(env.delivery.jobs) == 2
    env2 = make_env()
    await env2.add(message(112, "z1", message_id=0), message(113, "z2", message_id=0))
    await env2.drain()
    assert env2.agent_requests[-1]["text"] == "z1\nz2"  # arrival order when ids are 0
