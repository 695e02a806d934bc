"""Groups (addressed or not, context), /new, button feedback and Telegram Business, through
the pipeline on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.processing.feedback import SPENT_DATA, marked_keyboard
from app.processing.turns import TurnConfig
from app.storage.engine import make_engine
from app.storage.inbox import DONE, IGNORED
from app.storage.migrate import create_schema
from app.utils import HANDLED_KINDS, parse_update
from tests.support.pipeline_env import BOT, PipelineEnv, group_chat, message, press, sender

Factory = Callable[..., PipelineEnv]
KEYBOARD = {
    "inline_keyboard": [
        [{"text": "Approve", "callback_data": "ok"}, {"text": "Reject", "callback_data": "no"}],
        [{"text": "Docs", "url": "https://example.com"}],
    ]
}


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


# --- groups --------------------------------------------------------------------------------


async def test_group_answers_only_when_addressed(make_env: Factory) -> None:
    env = make_env(turns=TurnConfig(mode="queue"), triggers=["jarvis"])
    g = group_chat()
    bot_message = {"message_id": 77, "from": {"id": BOT.id, "is_bot": True}, "chat": g}
    updates = [
        message(1, "lunch at noon?", chat=g),  # not for the bot
        message(2, "@turns_bot what's the weather", chat=g),  # mention
        message(3, "and tomorrow?", chat=g, reply_to_message=bot_message),  # reply to the bot
        message(4, "/help", chat=g),  # a command for every bot
        message(5, "/help@OtherBot", chat=g),  # someone else's command
        message(6, "hey Jarvis, a joke", chat=g),  # a trigger word
        message(7, "email me at x@turns_bot.com", chat=g),  # not a mention
        message(8, "/start@turns_bot", chat=g),  # our command
    ]
    await env.add(*updates)
    outcomes = await env.drain()
    answered = [r["text"] for r in env.agent_requests]
    assert answered == ["what's the weather", "and tomorrow?", "/help", "hey Jarvis, a joke",
                        "/start@turns_bot"]  # fmt: skip
    assert [o.state for o in outcomes] == [DONE] * 8  # all recorded
    assert len(env.inbound()) == 8
    assert env.inbound()[1] == "@turns_bot what's the weather"  # the history keeps the mention
    addressed = [r["metadata"]["gateway"]["addressed"] for r in env.users.rows]
    assert addressed == [None, "mention", "reply", "command", None, "trigger", None, "command"]
    assert len(env.delivery.jobs) == 5
    assert env.delivery.typing_chats == [g["id"]] * 5  # no typing for what is not answered
    # A group reply quotes the message it answers.
    assert env.delivery.jobs[0]["reply_to_message_id"] == 2
    assert env.agent_requests[0]["chat"] == {"id": g["id"], "type": "supergroup", "title": "Team"}


async def test_group_reply_all_answers_everything(make_env: Factory) -> None:
    env = make_env(group_reply="all", turns=TurnConfig(mode="queue"))
    await env.add(message(10, "just chatting", chat=group_chat()))
    await env.drain()
    assert [r["text"] for r in env.agent_requests] == ["just chatting"]


async def test_unaddressed_group_messages_are_context_with_their_speakers(
    make_env: Factory,
) -> None:
    env = make_env(turns=TurnConfig(mode="queue"))
    g = group_chat()
    bo = sender(43, "Bo")
    await env.add(
        message(20, "let's meet at 5", chat=g, user=bo),
        message(21, "ok, at the station", chat=g),
        message(22, "@turns_bot when did Bo say?", chat=g),
    )
    await env.drain()
    [request] = env.agent_requests
    assert [(h["from"], h["text"]) for h in request["history"]] == [
        ("Bo", "let's meet at 5"),
        ("An", "ok, at the station"),
    ]
    assert request["text"] == "when did Bo say?"


async def test_an_album_addressed_by_one_caption_is_one_group_turn(make_env: Factory) -> None:
    env = make_env(turns=TurnConfig(mode="queue", album_grace=1.0))
    g = group_chat()
    doc = {"file_id": "BQAC", "file_unique_id": "d1", "file_name": "a.pdf",
           "mime_type": "application/pdf", "file_size": 2048}  # fmt: skip
    # The item without the caption arrives first: it waits for its album before deciding.
    await env.add(message(30, None, chat=g, message_id=61, media_group_id="m", document=doc))
    await env.add(
        message(31, None, chat=g, message_id=60, media_group_id="m", document=doc,
                caption="@turns_bot summarise these")
    )  # fmt: skip
    await env.drain()
    [request] = env.agent_requests
    assert request["text"] == "summarise these"
    assert [a["file_name"] for a in request["attachments"]] == ["a.pdf", "a.pdf"]


# --- /new ----------------------------------------------------------------------------------


async def test_new_starts_a_fresh_context_and_keeps_the_history(make_env: Factory) -> None:
    env = make_env(turns=TurnConfig(mode="queue"))
    await env.add(message(40, "my name is An"))
    await env.drain()
    await env.users.log_interaction("u42", "re: my name is An", "out", 1000, {}, 42)
    await env.add(message(41, "/new"))
    await env.drain()
    await env.users.log_interaction("u42", "fresh start", "out", 1001, {}, 42)
    await env.add(message(42, "what is my name?"))
    await env.drain()
    new, after = env.agent_requests[1:]
    assert new["command"] == "/new" and new["history"] == []
    assert [h["text"] for h in after["history"]] == ["fresh start"]
    assert env.inbound() == ["my name is An", "/new", "what is my name?"]  # nothing deleted
    await env.add(message(43, "/reset"))
    await env.drain()
    await env.add(message(44, "x"))
    await env.drain()
    assert env.agent_requests[-1]["history"] == []  # nothing before the /reset


# --- buttons -------------------------------------------------------------------------------


def test_marked_keyboard_keeps_the_choice_and_links() -> None:
    assert marked_keyboard(KEYBOARD, "ok") == {
        "inline_keyboard": [
            [{"text": "✓ Approve", "callback_data": SPENT_DATA}],
            [{"text": "Docs", "url": "https://example.com"}],
        ]
    }
    assert marked_keyboard(KEYBOARD, "unknown") is None
    assert marked_keyboard(None, "ok") is None


async def test_a_press_marks_the_choice_and_reaches_the_agent(make_env: Factory) -> None:
    env = make_env()
    await env.add(press(50, "ok", markup=KEYBOARD))
    await env.drain()
    [edit] = env.calls("editMessageReplyMarkup")
    assert edit["message_id"] == 900 and edit["chat_id"] == 42
    assert edit["reply_markup"]["inline_keyboard"][0] == [
        {"text": "✓ Approve", "callback_data": SPENT_DATA}
    ]
    [request] = env.agent_requests
    assert request["text"] == "ok" and request["kind"] == "callback_query"
    assert request["button"] == {"data": "ok", "text": "Approve", "message_id": 900}
    assert len(env.calls("answerCallbackQuery")) == 1
    # Pressing the spent button again: answered (spinner), nothing else.
    spent = {"inline_keyboard": edit["reply_markup"]["inline_keyboard"]}
    await env.add(press(51, SPENT_DATA, markup=spent))
    outcomes = await env.drain()
    assert [o.state for o in outcomes] == [IGNORED]
    assert len(env.calls("answerCallbackQuery")) == 2 and len(env.agent_requests) == 1
    assert len(env.calls("editMessageReplyMarkup")) == 1


@pytest.mark.parametrize(("mode", "edits"), [("remove", 1), ("keep", 0)])
async def test_button_feedback_remove_and_keep(make_env: Factory, mode: str, edits: int) -> None:
    env = make_env(feedback=mode)
    await env.add(press(60, "no", markup=KEYBOARD))
    await env.drain()
    calls = env.calls("editMessageReplyMarkup")
    assert len(calls) == edits
    if calls:
        assert "reply_markup" not in calls[0]  # omitted: Telegram removes the keyboard
    assert len(env.agent_requests) == 1


# --- Telegram Business ---------------------------------------------------------------------


def business(update_id: int, text: str, *, from_id: int = 42, **fields: Any) -> dict[str, Any]:
    update = message(update_id, text, kind="business_message", user=sender(from_id),
                     chat={"id": 42, "type": "private", "first_name": "An"},
                     business_connection_id="biz-1", **fields)  # fmt: skip
    return update


async def test_business_messages_are_answered_through_their_connection(
    make_env: Factory,
) -> None:
    env = make_env()
    await env.add(business(70, "is the shop open?"), business(71, "today?"))
    await env.drain()
    [request] = env.agent_requests
    assert request["text"] == "is the shop open?\ntoday?"
    assert request["kind"] == "business_message"
    assert request["business_connection_id"] == "biz-1"
    [job] = env.delivery.jobs
    assert job["business_connection_id"] == "biz-1" and job["reply_to_message_id"] is None
    # Business chats have their own message ids: never the dedupe key.
    assert [r["telegram_message_id"] for r in env.users.rows] == [None, None]


async def test_echoes_and_the_owners_own_messages_are_ignored(make_env: Factory) -> None:
    env = make_env()
    echo = business(80, "we open at 9", from_id=5000, sender_business_bot={"id": BOT.id})
    owner = business(81, "I'll handle this one", from_id=5000)
    await env.add(echo, owner)
    outcomes = await env.drain()
    assert [o.state for o in outcomes] == [IGNORED, IGNORED]
    assert env.agent_requests == [] and env.users.rows == []
    assert parse_update(echo)["unsupported_reason"] == "the bot's own message in a business chat"


def test_handled_kinds_are_what_the_pipeline_parses() -> None:
    assert HANDLED_KINDS == (
        "message",
        "edited_message",
        "callback_query",
        "business_message",
        "edited_business_message",
        "stopped_message_generation",
    )
    for kind in HANDLED_KINDS:
        if kind == "stopped_message_generation":
            stop = {"update_id": 1, kind: {"chat": {"id": 5, "type": "private"}, "draft_id": 3}}
            assert parse_update(stop)["kind"] == kind
            continue
        body = (
            press(1, "x", markup=None) if kind == "callback_query" else message(1, "t", kind=kind)
        )
        if kind.endswith("business_message"):
            body[kind]["business_connection_id"] = "b"
        assert parse_update(body)["kind"] == kind
