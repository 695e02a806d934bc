"""End to end, default settings: bursts, albums, groups, files, /new, button feedback and
Telegram Business, against the sandbox, the reference User Service and the agent stand-in.

The gateway runs with its defaults for turns (TURN_MODE=collect, TURN_DEBOUNCE=1, ALBUM_GRACE=1,
GROUP_REPLY=addressed, BUTTON_FEEDBACK=mark). Each test uses its own users and chats.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from app.utils import HANDLED_KINDS
from sandbox.config import DEFAULT_TOKEN as DEV_TOKEN
from tests.e2e.stack import Stack, running_stack
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("e2e-turns")) as s:
        yield s


def ins(rows: list[dict[str, Any]]) -> list[str]:
    return [r["message_text"] for r in rows if r["direction"] == "in"]


def test_start_up_publishes_commands_and_asks_only_for_handled_kinds(stack: Stack) -> None:
    wait_until(lambda: bool(stack.ctl.commands()), what="setMyCommands at start")
    [published] = stack.ctl.commands()
    assert [c["command"] for c in published["commands"]] == ["start", "help", "new", "stop"]
    assert stack.ctl.info()["allowed_updates"] == list(HANDLED_KINDS)
    assert stack.ctl.calls("getMe")  # the bot's username, for group mentions


def test_a_burst_is_one_turn(stack: Stack) -> None:
    uid = stack.new_user("Burst")
    stack.ctl.send_burst(uid, ["hi", "one question", "how do I pay?"], spacing=0.2)
    assert stack.wait_texts(uid, 1) == ["Agent: hi | one question | how do I pay?"]
    [request] = stack.wait_agent_requests(uid, 1)
    assert request["text"] == "hi\none question\nhow do I pay?"
    assert [p["text"] for p in request["parts"]] == ["hi", "one question", "how do I pay?"]
    rows = stack.wait_history(uid, 4)
    assert ins(rows) == ["hi", "one question", "how do I pay?"]  # a row per message
    assert [r["direction"] for r in rows] == ["in", "in", "in", "out"]
    # A later message is its own turn.
    stack.ctl.send_text(uid, "thanks")
    assert stack.wait_texts(uid, 2)[1] == "Agent: thanks"


def test_an_album_delivered_out_of_order_is_one_turn(stack: Stack) -> None:
    uid = stack.new_user("Album")
    album = stack.ctl.send_album(uid, 3, caption="our trip", order=[2, 0, 1], spacing=0.3)
    [reply] = stack.wait_texts(uid, 1)
    [request] = stack.wait_agent_requests(uid, 1)
    ids = sorted(m["message_id"] for m in album["messages"])
    assert [p["message_id"] for p in request["parts"]] == ids  # in message order
    assert request["text"] == "our trip" and request["media_group_id"] == album["media_group_id"]
    assert [a["kind"] for a in request["attachments"]] == ["photo"] * 3
    assert reply.startswith("Agent: our trip | [photo] | [photo]")
    stack.wait_history(uid, 4)
    assert stack.texts(uid) == [reply]  # one reply, even after the history is complete


def test_group_answers_when_addressed_and_keeps_the_rest_as_context(stack: Stack) -> None:
    ana, ben = stack.new_user("Ana"), stack.new_user("Ben")
    group = int(stack.ctl.create_group("Planning", [ana, ben], type="supergroup")["id"])
    stack.ctl.send_group_message(ben, group, "lunch at noon tomorrow?")
    stack.wait_history(ben, 1)
    assert stack.ctl.bot_messages(group) == []
    assert [c for c in stack.ctl.calls("sendChatAction") if c["params"]["chat_id"] == group] == []

    stack.ctl.send_group_message(ana, group, "when is lunch?", mention=True)
    [first] = stack.wait_texts(group, 1)
    assert first == "Agent: when is lunch?"  # the mention is stripped for the agent
    [request] = stack.wait_agent_requests(group, 1)
    assert request["chat"]["type"] == "supergroup"
    assert {"from": "Ben", "text": "lunch at noon tomorrow?"} in [
        {"from": h.get("from"), "text": h["text"]} for h in request["history"]
    ]
    bot_message = stack.ctl.bot_messages(group)[0]
    assert bot_message["reply_to_message"]["from"]["id"] == ana  # it quotes what it answers

    stack.ctl.send_group_message(ben, group, "and dinner?", reply_to=bot_message["message_id"])
    assert stack.wait_texts(group, 2)[1] == "Agent: and dinner?"
    stack.ctl.send_command(ben, "help", chat_id=group, bot_username=True)
    assert len(stack.wait_texts(group, 3)) == 3
    stack.ctl.send_group_message(ana, group, "ok see you")  # not addressed
    rows = stack.wait_history(ana, 3)
    assert ins(rows) == ["@sandbox_bot when is lunch?", "ok see you"]
    assert len(stack.texts(group)) == 3


def test_the_agent_downloads_a_file_through_the_gateway(stack: Stack) -> None:
    uid = stack.new_user("Filer")
    content = b"meeting notes: budget 42\n" * 100
    stack.agent_download(True)
    try:
        stack.ctl.send_file(uid, "document", content, file_name="notes.txt", caption="read this")
        [reply] = stack.wait_texts(uid, 1)
        stack.ctl.send_file(uid, "video", size=25 * 2**20, caption="and this")
        replies = stack.wait_texts(uid, 2)
    finally:
        stack.agent_download(False)
    assert reply == f"Agent: read this\ndocument 200 {len(content)} bytes"
    assert replies[1].startswith("Agent: and this\nvideo 413 ")  # refused, with a reason
    first, second = stack.wait_agent_requests(uid, 2)
    [doc] = first["attachments"]
    assert doc["kind"] == "document" and doc["file_name"] == "notes.txt"
    assert doc["size"] == len(content) and doc["caption"] == "read this"
    assert doc["url"].startswith(f"{stack.gateway.url}/files/")
    assert second["attachments"][0]["downloadable"] is False
    downloads = [
        d
        for d in stack.agent_downloads()
        if d["url"] in (doc["url"], second["attachments"][0]["url"])
    ]
    got, refused = downloads
    assert got["status"] == 200 and got["sha256"] == hashlib.sha256(content).hexdigest()
    assert got["content_type"].startswith("text/plain")
    assert refused["status"] == 413 and "20 MB" in refused["detail"]
    # The bot token is in no URL, answer header or gateway log line.
    for d in downloads:
        assert DEV_TOKEN not in d["url"] and DEV_TOKEN not in str(d["headers"])
    assert DEV_TOKEN not in stack.gateway.output()
    assert stack.ctl.calls("getFile")


def test_new_starts_a_fresh_context(stack: Stack) -> None:
    uid = stack.new_user("Fresh")
    stack.ctl.send_text(uid, "my name is Fresh")
    stack.wait_texts(uid, 1)
    stack.wait_history(uid, 2)
    stack.ctl.send_command(uid, "new")
    stack.wait_texts(uid, 2)
    stack.wait_history(uid, 4)
    stack.ctl.send_text(uid, "what is my name?")
    stack.wait_texts(uid, 3)
    _, new, after = stack.wait_agent_requests(uid, 3)
    assert new["command"] == "/new" and new["history"] == []
    assert [h["text"] for h in after["history"]] == ["Agent: /new"]  # nothing before /new
    assert ins(stack.wait_history(uid, 6)) == ["my name is Fresh", "/new", "what is my name?"]


def test_a_pressed_button_shows_the_choice(stack: Stack) -> None:
    uid = stack.new_user("Chooser")
    stack.ctl.send_text(uid, "show buttons")
    [message] = stack.ctl.wait_for_bot_messages(uid, 1)
    stack.ctl.press_button(uid, message["message_id"], "answer:yes")
    assert stack.wait_texts(uid, 2)[1] == "Agent: answer:yes"

    def marked() -> bool:
        versions = stack.ctl.message_history(uid, message["message_id"])["versions"]
        return len(versions) >= 2

    wait_until(marked, what="the keyboard to change after the press")
    latest = stack.ctl.message_history(uid, message["message_id"])["versions"][-1]
    assert latest["reply_markup"]["inline_keyboard"] == [
        [{"text": "✓ Yes", "callback_data": "gw:spent"}],
        [{"text": "Docs", "url": "https://example.com/docs"}],
    ]
    [request] = [r for r in stack.agent_requests(uid) if r["kind"] == "callback_query"]
    assert request["button"]["text"] == "Yes"
    # The spent button is answered (no spinner) and goes nowhere.
    pressed = stack.ctl.press_button(uid, message["message_id"], "gw:spent")
    query_id = pressed["callback_query"]["id"]
    wait_until(
        lambda: any(a["callback_query_id"] == query_id for a in stack.ctl.callback_answers()),
        what="the spent press answered",
    )
    stack.ctl.send_text(uid, "after")
    assert stack.wait_texts(uid, 3)[2] == "Agent: after"


def test_business_messages_are_answered_through_their_connection(stack: Stack) -> None:
    owner, customer = stack.new_user("Owner"), stack.new_user("Customer")
    connection = stack.ctl.connect_business(owner)["connection"]["id"]

    def answered() -> bool:
        return any(
            m.get("sender_business_bot") for m in stack.ctl.business_messages(connection, customer)
        )

    # The agent takes a moment, as a real one does: "typing…" is shown while it works (an
    # instant agent may answer before the first chat action leaves, which is fine but unprovable).
    stack.agent_control("slow", delay=0.6)
    try:
        stack.ctl.send_business_message(connection, customer, "are you open today?")
        wait_until(answered, what="the reply in the business chat")
    finally:
        stack.agent_control("echo")
    [reply] = [
        m for m in stack.ctl.business_messages(connection, customer) if m.get("sender_business_bot")
    ]
    assert reply["text"] == "Agent: are you open today?" and reply["from"]["id"] == owner
    [request] = stack.wait_agent_requests(customer, 1)
    typing = [
        c
        for c in stack.ctl.calls("sendChatAction")
        if c["params"].get("business_connection_id") == connection
    ]
    assert typing and {c["status"] for c in typing} == {200}  # "typing…" in the business chat
    assert request["kind"] == "business_message"
    assert request["business_connection_id"] == connection
    # The echo of the bot's own reply (a business_message from the owner) is not answered,
    # nor is the owner writing himself.
    stack.ctl.send_business_message(connection, owner, "I'll take it from here", chat_id=customer)
    stack.ctl.send_business_message(connection, customer, "thanks!")
    wait_until(lambda: len(stack.agent_requests(customer)) >= 2, what="the second message")
    assert [r["text"] for r in stack.agent_requests(customer)] == ["are you open today?", "thanks!"]
    rows = stack.wait_history(customer, 4)
    assert ins(rows) == ["are you open today?", "thanks!"]


def test_message_id_zero_is_answered_and_recorded(stack: Stack) -> None:
    uid = stack.new_user("Ephemeral")
    stack.ctl.send_text(uid, "zero one", message_id=0)
    stack.wait_texts(uid, 1)
    stack.ctl.send_text(uid, "zero two", message_id=0)
    assert stack.wait_texts(uid, 2) == ["Agent: zero one", "Agent: zero two"]
    rows = stack.wait_history(uid, 4)
    assert ins(rows) == ["zero one", "zero two"]
    assert {r["telegram_message_id"] for r in rows if r["direction"] == "in"} == {None}
