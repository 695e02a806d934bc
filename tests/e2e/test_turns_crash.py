"""kill -9 in the middle of a collected turn, on SQLite and on PostgreSQL: the real gateway
process dies while the agent is answering a burst; after the restart no message is lost, none
is recorded or answered twice."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.stack import Stack, running_stack
from tests.support.pg import temp_database
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e
MARKER = re.compile(r"\bk\d\b")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp(f"e2e-turn-crash-{request.param}")
    if request.param == "postgres":
        with (
            temp_database("turns") as url,
            running_stack(state, DATABASE_URL=url, AGENT_TIMEOUT="30", TURN_DEBOUNCE="0.5") as s,
        ):
            yield s
    else:
        with running_stack(state, AGENT_TIMEOUT="30", TURN_DEBOUNCE="0.5") as s:
            yield s


def _ins(rows: list[dict[str, Any]]) -> list[str]:
    return [r["message_text"] for r in rows if r["direction"] == "in"]


def test_kill_9_while_the_agent_answers_a_collected_turn(stack: Stack) -> None:
    uid = stack.new_user("Crash")
    stack.agent_control("slow", delay=3)
    stack.ctl.send_burst(uid, ["k1", "k2", "k3"], spacing=0.1)
    [asked] = stack.wait_agent_requests(uid, 1, timeout=15)
    assert [p["text"] for p in asked["parts"]] == ["k1", "k2", "k3"]
    # Every message of the turn is recorded before the agent is asked.
    assert _ins(stack.wait_history(uid, 3)) == ["k1", "k2", "k3"]
    stack.kill_gateway()
    stack.ctl.send_text(uid, "k4")  # arrives while the gateway is down (Telegram retries)
    stack.agent_control("echo")
    stack.start_gateway()

    answered: list[str] = []

    def all_answered() -> bool:
        answered[:] = MARKER.findall(" ".join(stack.texts(uid)))
        return len(answered) >= 4

    wait_until(all_answered, timeout=40, what="every message answered after the restart")
    stack.ctl.send_text(uid, "k5")  # its reply comes after anything the crash could cause
    wait_until(lambda: "k5" in " ".join(stack.texts(uid)), timeout=20, what="the last reply")
    assert MARKER.findall(" ".join(stack.texts(uid))) == ["k1", "k2", "k3", "k4", "k5"]
    replies = stack.texts(uid)
    rows = stack.wait_history(uid, 5 + len(replies))
    assert _ins(rows) == ["k1", "k2", "k3", "k4", "k5"]  # each message recorded once
    assert [r["message_text"] for r in rows if r["direction"] == "out"] == replies
    sent = [c for c in stack.ctl.calls("sendMessage", 200) if c["params"]["chat_id"] == uid]
    assert [c["params"]["text"] for c in sent] == replies  # nothing sent twice
