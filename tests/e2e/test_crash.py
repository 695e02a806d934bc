"""End to end: the gateway killed, stopped, or cut off from the User Service mid-flight.

The module's gateway waits long for the agent (AGENT_TIMEOUT=30), so a slow agent keeps an
update in flight while the test kills or stops the process around it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.stack import Stack, running_stack
from tests.support.servers import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("e2e-crash"), AGENT_TIMEOUT="30", SHUTDOWN_GRACE_SECONDS="10"
    ) as s:
        yield s


@pytest.fixture
def gateway_up(stack: Stack) -> Iterator[Stack]:
    """The gateway running and the agent echoing at the start and at the end of the test."""
    stack.start_gateway()
    stack.agent_control("echo")
    yield stack
    stack.agent_control("echo")
    stack.start_users()


def pairs(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["direction"], r["message_text"]) for r in rows]


def test_kill_9_mid_flight_then_restart(gateway_up: Stack) -> None:
    stack = gateway_up
    uid = stack.new_user("Crash")
    stack.agent_control("slow", delay=2.5)
    stack.ctl.send_text(uid, "survive this")
    stack.wait_agent_requests(uid, 1)  # the gateway is waiting for the agent now
    stack.kill_gateway()
    assert stack.ctl.bot_messages(uid) == []
    stack.start_gateway()  # same port, same database; the lease expires, the update resumes

    assert stack.wait_texts(uid, 1, timeout=30) == ["Agent: survive this"]
    stack.agent_control("echo")
    # The follow-up's reply comes after any second reply the crash could have caused.
    stack.ctl.send_text(uid, "and after")
    assert stack.wait_texts(uid, 2, timeout=20) == ["Agent: survive this", "Agent: and after"]
    rows = stack.wait_history(uid, 4)
    assert pairs(rows) == [
        ("in", "survive this"),
        ("out", "Agent: survive this"),
        ("in", "and after"),
        ("out", "Agent: and after"),
    ]
    sent = [c for c in stack.ctl.calls("sendMessage", 200) if c["params"]["chat_id"] == uid]
    assert [c["params"]["text"] for c in sent] == ["Agent: survive this", "Agent: and after"]


def test_history_write_during_outage_goes_to_retry_queue(gateway_up: Stack) -> None:
    """The User Service dies after the inbound row was written: the reply is still sent, and
    its outbound row waits in the retry queue until the service is back."""
    stack = gateway_up
    uid = stack.new_user("Queue")
    stack.agent_control("slow", delay=3)
    stack.ctl.send_text(uid, "remember me")
    stack.wait_agent_requests(uid, 1)  # inbound row written, agent thinking
    stack.stop_users()
    try:
        reply = stack.ctl.wait_for_bot_messages(uid, 1, timeout=15)[0]
        assert reply["text"] == "Agent: remember me"
        wait_until(
            lambda: stack.admin("GET", "/admin/retry-queue")["size"] >= 1,
            what="the outbound history row to be queued",
        )
    finally:
        stack.start_users()
    flushed = stack.admin("POST", "/admin/flush-retries")
    assert flushed["remaining"] == 0
    rows = stack.wait_history(uid, 2)
    assert pairs(rows) == [("in", "remember me"), ("out", "Agent: remember me")]
    assert rows[1]["telegram_message_id"] == reply["message_id"]
    assert stack.admin("GET", "/admin/retry-queue")["size"] == 0


def test_sigterm_finishes_in_flight_reply(gateway_up: Stack) -> None:
    stack = gateway_up
    uid = stack.new_user("Graceful")
    stack.agent_control("slow", delay=1)
    stack.ctl.send_text(uid, "finish me")
    stack.wait_agent_requests(uid, 1)
    code = stack.stop_gateway()
    output = stack.gateway.output()
    # uvicorn (>= 0.29) re-raises the SIGTERM it caught once its graceful shutdown is complete,
    # so a clean stop of `python -m uvicorn` ends "killed by SIGTERM" rather than with 0; the
    # log lines below are what prove the shutdown was complete.
    assert code in (0, -signal.SIGTERM), output[-3000:]
    assert "gateway stopped" in output
    assert "Application shutdown complete" in output
    # Delivered (and recorded) before the process exited: no waiting here.
    assert stack.texts(uid) == ["Agent: finish me"]
    assert pairs(stack.history(uid)) == [("in", "finish me"), ("out", "Agent: finish me")]
