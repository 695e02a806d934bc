"""End to end: a streamed reply grows in the chat, stops on request, survives a kill -9.

The agent stand-in streams its reply word by word (`mode="stream"`); the sandbox enforces
Telegram's edit limits and records every version of a message, every draft and every call.
One stack for the module (STREAM_MODE=edit); the other modes run on a second gateway that
takes the webhook over for the test (`Stack.other_gateway`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.processing.pipeline import NOTHING_TO_STOP
from tests.e2e.stack import Stack, running_stack
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e

WORDS = 20


def full(text: str, words: int = WORDS) -> str:
    return f"Agent: {text}" + "".join(f" w{n}" for n in range(1, words + 1))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("e2e-streaming"), STREAM_MODE="edit", AGENT_TIMEOUT="5"
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def streaming_agent(stack: Stack) -> Iterator[None]:
    stack.agent_control("stream", delay=0.1, words=WORDS, clear=True)
    yield
    stack.agent_control("echo", delay=0.0)
    stack.ctl.clear_faults()


def calls(stack: Stack, method: str, chat_id: int) -> list[dict[str, Any]]:
    return [c for c in stack.ctl.calls(method) if c["params"].get("chat_id") == chat_id]


def final_text(stack: Stack, chat_id: int, text: str, timeout: float = 20) -> dict[str, Any]:
    """Wait until the bot's (only) message shows `text`; the message."""
    found: list[dict[str, Any]] = []

    def shows() -> bool:
        nonlocal found
        found = stack.ctl.bot_messages(chat_id)
        return bool(found) and found[-1].get("text") == text

    wait_until(shows, timeout=timeout, what=f"the bot's message to show {text[:40]!r}")
    return found[-1]


def out_rows(stack: Stack, uid: int) -> list[dict[str, Any]]:
    return [r for r in stack.history(uid) if r["direction"] == "out"]


def test_edit_mode_grows_the_message_then_writes_the_final_text(stack: Stack) -> None:
    uid = stack.new_user("Grow")
    stack.ctl.send_text(uid, "tell me")
    message = final_text(stack, uid, full("tell me"))
    assert len(stack.ctl.bot_messages(uid)) == 1  # one bubble, written over
    versions = [
        v["text"] for v in stack.ctl.message_history(uid, message["message_id"])["versions"]
    ]
    assert len(versions) >= 2 and versions[-1] == full("tell me")
    assert all(a != b for a, b in itertools.pairwise(versions))  # never unchanged
    assert all(full("tell me").startswith(v.removesuffix(" …")) for v in versions)
    assert len(calls(stack, "sendMessage", uid)) == 1
    edits = calls(stack, "editMessageText", uid)
    assert [e for e in edits if e["status"] != 200] == []  # no refused edit (no flood, no no-op)
    previews = [e["time"] for e in edits][:-1]  # the last edit is the final text
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(previews))
    # "typing..." until the first piece of text, not after.
    first_send = calls(stack, "sendMessage", uid)[0]["time"]
    assert all(c["time"] < first_send for c in calls(stack, "sendChatAction", uid))
    wait_until(lambda: len(out_rows(stack, uid)) == 1, what="the outbound history row")
    [row] = out_rows(stack, uid)
    assert row["message_text"] == full("tell me")
    assert row["telegram_message_id"] == message["message_id"]


def test_groups_are_edited_less_often(stack: Stack) -> None:
    uid = stack.new_user("Member")
    group = stack.ctl.create_group("Streamers", [uid])
    gid = int(group["id"])
    stack.ctl.send_group_message(uid, gid, "hello group", mention=True)  # addressed
    final_text(stack, gid, full("hello group"))
    edits = calls(stack, "editMessageText", gid)
    # 2 s of streaming at one preview per 3 s: the first message, then the final text only.
    assert len(calls(stack, "sendMessage", gid)) == 1
    assert len(edits) <= 2


def test_a_429_storm_on_edits_slows_previews_but_the_final_text_arrives_whole(
    stack: Stack,
) -> None:
    uid = stack.new_user("Storm")
    stack.ctl.flood_edits(count=3, retry_after=2)
    started = time.monotonic()
    stack.ctl.send_text(uid, "under a storm")
    final_text(stack, uid, full("under a storm"), timeout=30)
    refused = [e for e in calls(stack, "editMessageText", uid) if e["status"] == 429]
    assert 1 <= len(refused) <= 3
    assert time.monotonic() - started < 20  # honours retry_after, no more
    assert len(stack.ctl.bot_messages(uid)) == 1


def test_a_final_text_over_4096_is_the_edited_first_part_plus_more(stack: Stack) -> None:
    stack.agent_control("stream", delay=0.0005, words=900)
    uid = stack.new_user("Long")
    stack.ctl.send_text(uid, "a long one")
    whole = full("a long one", 900)
    wait_until(lambda: len(stack.ctl.bot_messages(uid)) >= 2, timeout=30, what="two messages")
    wait_until(
        lambda: (
            "".join(m["text"] for m in stack.ctl.bot_messages(uid)).replace(" ", "")
            == whole.replace(" ", "")
        ),
        timeout=30,
        what="the whole text across the parts",
    )
    messages = stack.ctl.bot_messages(uid)
    assert all(len(m["text"]) <= 4096 for m in messages)
    assert len(calls(stack, "sendMessage", uid)) == len(messages)  # no orphan preview


def test_stop_mid_stream_closes_the_agent_stream_and_keeps_what_was_shown(stack: Stack) -> None:
    stack.agent_control("stream", delay=0.2, words=100, clear=True)  # ~20 s if not stopped
    uid = stack.new_user("Stopper")
    stack.ctl.send_text(uid, "go on and on")
    stack.ctl.wait_for_bot_messages(uid, 1)  # the preview is on the screen
    stopped_at = time.monotonic()
    stack.ctl.send_text(uid, "/stop")
    wait_until(
        lambda: [s["outcome"] for s in stack.agent_streams()] == ["closed"],
        timeout=5,
        what="the agent stand-in to see its stream closed",
    )
    assert time.monotonic() - stopped_at < 5  # at once, not after the 20 s answer
    wait_until(lambda: len(out_rows(stack, uid)) == 1, what="the outbound history row")
    [row] = out_rows(stack, uid)
    assert row["metadata"]["stopped"] is True
    assert row["message_text"].startswith("Agent: go on and on")
    assert "w100" not in row["message_text"]
    [message] = stack.ctl.bot_messages(uid)  # no "nothing to stop" reply to the used /stop
    assert message["text"] == row["message_text"]


def test_stop_with_nothing_running_is_answered_politely(stack: Stack) -> None:
    uid = stack.new_user("Idle")
    stack.ctl.send_text(uid, "/stop")
    assert [m["text"] for m in stack.ctl.wait_for_bot_messages(uid, 1)] == [NOTHING_TO_STOP]


def test_draft_mode_and_telegrams_stop_button(stack: Stack) -> None:
    with stack.other_gateway("drafts", STREAM_MODE="draft"):
        uid = stack.new_user("Drafty")
        stack.ctl.send_text(uid, "draft it")
        final_text(stack, uid, full("draft it"))
        [draft] = stack.ctl.drafts(uid)
        assert draft["can_stop"] is True and len(draft["versions"]) >= 1
        assert len(calls(stack, "sendMessage", uid)) == 1  # the final text, once
        assert calls(stack, "editMessageText", uid) == []

        stack.agent_control("stream", delay=0.2, words=100, clear=True)
        other = stack.new_user("Stops")
        stack.ctl.send_text(other, "long draft")
        [draft] = stack.ctl.wait_for_drafts(other)
        stack.ctl.stop_draft(other, int(draft["draft_id"]))
        wait_until(
            lambda: [s["outcome"] for s in stack.agent_streams()] == ["closed"],
            timeout=5,
            what="the stream closed by Telegram's stop button",
        )
        [message] = stack.ctl.wait_for_bot_messages(other, 1)
        assert message["text"].startswith("Agent: long draft") and "w100" not in message["text"]


def test_stream_mode_off_sends_one_message(stack: Stack) -> None:
    with stack.other_gateway("unstreamed", STREAM_MODE="off"):
        uid = stack.new_user("Plain")
        stack.ctl.send_text(uid, "all at once")
        final_text(stack, uid, full("all at once"))
        assert len(calls(stack, "sendMessage", uid)) == 1
        assert calls(stack, "editMessageText", uid) == []


def test_kill_9_mid_stream_then_restart_writes_the_same_message(stack: Stack) -> None:
    stack.agent_control("stream", delay=0.2, words=30, clear=True)
    uid = stack.new_user("Crash")
    stack.ctl.send_text(uid, "survive this")
    [preview] = stack.ctl.wait_for_bot_messages(uid, 1)
    stack.kill_gateway()
    stack.start_gateway()
    message = final_text(stack, uid, full("survive this", 30), timeout=40)
    assert message["message_id"] == preview["message_id"]
    assert len(stack.ctl.bot_messages(uid)) == 1  # no orphan preview, no second bubble
    wait_until(lambda: len(out_rows(stack, uid)) >= 1, timeout=20, what="the outbound row")
    [row] = out_rows(stack, uid)
    assert row["message_text"] == full("survive this", 30)
