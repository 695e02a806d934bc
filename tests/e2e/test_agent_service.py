"""End to end with the reference Agent Service: sandbox (Telegram) → gateway → agent service
(→ stand-in model) → sandbox, every one a real process.

One stack for the module; the gateway is given one agent address, and each test puts the
backend it needs behind it (`agents.use(...)`): the demo backend, or the openai backend in
front of the stand-in upstream (tests/agent_service/openai_stub.py) when a test needs a model
that calls a tool on cue. Gateway and agent share an API key, as in production.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from agent_service.backends.demo import LONG_DATA
from tests.agent_service.openai_stub import Stub, openai_stub_process
from tests.e2e.stack import BUSY, Stack
from tests.support.agent_service import agent_service_on
from tests.support.servers import ServerProcess, free_port, wait_until

pytestmark = pytest.mark.e2e

AGENT_KEY = "e2e-agent-key-5b2e"


class Agents:
    """Whichever agent service runs at the one address the gateway knows."""

    def __init__(self, stub: Stub) -> None:
        self.port = free_port()
        self.stub = stub
        self.running: ServerProcess | None = None
        self.backend: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def use(self, backend: str) -> None:
        proc = self.running.proc if self.running is not None else None
        if self.backend == backend and proc is not None and proc.poll() is None:
            return
        self.stop()
        env = {"AGENT_BACKEND": backend, "AGENT_SERVICE_API_KEY": AGENT_KEY}
        if backend == "openai":
            env |= {
                "OPENAI_BASE_URL": self.stub.base,
                "AGENT_MODEL": "stub-model",
                "AGENT_UPSTREAM_TIMEOUT": "1.5",  # below the gateway's AGENT_TIMEOUT (2 s)
            }
        self.running = agent_service_on(self.port, **env).start()
        self.backend = backend

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
        self.running = None
        self.backend = None


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    with openai_stub_process() as server:
        yield Stub(server)


@pytest.fixture(scope="module")
def agents(stub: Stub) -> Iterator[Agents]:
    agents = Agents(stub)
    try:
        yield agents
    finally:
        agents.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, agents: Agents) -> Iterator[Stack]:
    agents.use("demo")
    s = Stack(
        tmp_path_factory.mktemp("e2e-agent-service"),
        agent=False,
        AGENT_SERVICE_BASE=agents.url,
        AGENT_SERVICE_API_KEY=AGENT_KEY,
        # These tests read whole replies; streaming into the chat is tested at the end (and in
        # tests/e2e/test_streaming.py).
        STREAM_MODE="off",
    )
    try:
        s.start()
        yield s
    finally:
        s.close()


def test_three_turns_the_third_answer_depends_on_the_first(stack: Stack, agents: Agents) -> None:
    agents.use("demo")
    uid = stack.new_user("Mai")
    stack.ctl.send_text(uid, "my favourite fruit is mango")
    stack.wait_texts(uid, 1)
    stack.ctl.send_text(uid, "and I live in Huế")
    stack.wait_texts(uid, 2)
    stack.ctl.send_text(uid, "What did I say first?")
    replies = stack.wait_texts(uid, 3)
    assert replies[0].startswith("You said: my favourite fruit is mango")
    assert replies[1].startswith("You said: and I live in Huế")
    assert "“my favourite fruit is mango”" in replies[2]  # the history reached the agent
    rows = stack.wait_history(uid, 6)
    assert [r["direction"] for r in rows] == ["in", "out"] * 3
    assert rows[5]["message_text"] == replies[2]


def test_demo_buttons_pressed_come_back_as_the_next_turn(stack: Stack, agents: Agents) -> None:
    agents.use("demo")
    uid = stack.new_user("Bảo")
    stack.ctl.send_command(uid, "/start")
    menu = stack.ctl.wait_for_bot_messages(uid, 1)[0]
    assert menu["text"].startswith("Hello Bảo!")
    buttons = [b for row in menu["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons][:2] == ["👍 Yes", "👎 No"]
    assert any(b.get("url") == "https://core.telegram.org/bots/api" for b in buttons)
    long_button = next(b for b in buttons if b["text"] == "Long data")
    assert len(long_button["callback_data"].encode()) <= 64  # the gateway's short key

    stack.ctl.press_button(uid, menu["message_id"], "answer:yes")
    assert stack.wait_texts(uid, 2)[1] == "You pressed a button; its data was “answer:yes”."
    # BUTTON_FEEDBACK=mark spent that menu (the choice is shown): press on a fresh one.
    stack.ctl.send_command(uid, "/start")
    menu = stack.ctl.wait_for_bot_messages(uid, 3)[2]
    buttons = [b for row in menu["reply_markup"]["inline_keyboard"] for b in row]
    long_button = next(b for b in buttons if b["text"] == "Long data")
    stack.ctl.press_button(uid, menu["message_id"], long_button["callback_data"])
    assert f"“{LONG_DATA}”" in stack.wait_texts(uid, 4)[3]  # the full data, back from the key


def test_a_long_demo_reply_is_split_by_the_gateway(stack: Stack, agents: Agents) -> None:
    agents.use("demo")
    uid = stack.new_user("Dài")
    stack.ctl.send_text(uid, "/long")
    wait_until(
        lambda: stack.texts(uid) and stack.texts(uid)[-1].endswith("The end of the long reply."),
        timeout=20,
        what="every part of the long reply",
    )
    parts = stack.texts(uid)
    assert len(parts) >= 3
    assert all(len(p) <= 4096 for p in parts)
    assert parts[0].startswith("This reply is longer than the 4096 characters")


def test_a_tool_call_becomes_buttons_and_a_press_comes_back(stack: Stack, agents: Agents) -> None:
    agents.use("openai")
    agents.stub.clear()
    agents.stub.script(
        {
            "tools": [
                {
                    "text": "Which colour?",
                    "buttons": [
                        {"text": "Red", "data": "color:red", "row": 1},
                        {"text": "Blue", "data": "color:blue", "row": 1},
                        {"text": "Docs", "url": "https://example.com/colours", "row": 2},
                    ],
                }
            ]
        }
    )
    uid = stack.new_user("Hoa")
    stack.ctl.send_text(uid, "pick a colour for me")
    message = stack.ctl.wait_for_bot_messages(uid, 1)[0]
    assert message["text"] == "Which colour?"
    keyboard = message["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in keyboard] == [["Red", "Blue"], ["Docs"]]
    assert keyboard[0][0]["callback_data"] == "color:red"
    assert keyboard[1][0]["url"] == "https://example.com/colours"

    stack.ctl.press_button(uid, message["message_id"], "color:red")
    reply = stack.wait_texts(uid, 2)[1]
    pressed = "(The person pressed the button whose data is 'color:red'.)"
    assert reply == f"Upstream heard: {pressed} (first: pick a colour for me)"
    messages = agents.stub.last()["body"]["messages"]
    assert messages[-3:] == [
        {"role": "user", "content": "pick a colour for me"},
        {"role": "assistant", "content": "Which colour?"},
        {"role": "user", "content": pressed},
    ]


def test_an_overloaded_model_gets_the_busy_text(stack: Stack, agents: Agents) -> None:
    agents.use("openai")
    agents.stub.clear()
    agents.stub.script(
        {"status": 429, "headers": {"retry-after": "3"}, "message": "Rate limit reached"}
    )
    uid = stack.new_user("Bận")
    stack.ctl.send_text(uid, "are you there?")
    assert stack.wait_texts(uid, 1) == [BUSY]


def test_an_agent_outage_gets_the_busy_text_and_recovery_answers_again(
    stack: Stack, agents: Agents
) -> None:
    agents.use("demo")
    agents.stop()  # the agent service is down
    uid = stack.new_user("Outage")
    stack.ctl.send_text(uid, "hello?")
    assert stack.wait_texts(uid, 1) == [BUSY]
    agents.use("demo")
    stack.ctl.send_text(uid, "hello again")
    assert stack.wait_texts(uid, 2)[1].startswith("You said: hello again")


def test_the_gateway_streams_the_agent_services_sse_answer(stack: Stack, agents: Agents) -> None:
    """The real Agent Service's SSE stream, through the gateway, into one growing message: the
    final text is exactly what the same request gets as JSON."""
    agents.use("demo")
    with stack.other_gateway("streaming", STREAM_MODE="edit"):
        uid = stack.new_user("Story")
        expected = httpx.post(
            agents.url + "/api/respond",
            json={"user": {"id": "x"}, "text": "/stream", "command": "/stream"},
            headers={"X-API-Key": AGENT_KEY},
            timeout=30,
        ).json()["reply"]
        stack.ctl.send_command(uid, "/stream")

        def final() -> bool:
            messages = stack.ctl.bot_messages(uid)
            return bool(messages) and messages[-1]["text"] == expected

        wait_until(final, timeout=30, what="the streamed story, complete")
        [message] = stack.ctl.bot_messages(uid)
        versions = stack.ctl.message_history(uid, message["message_id"])["versions"]
        assert len(versions) >= 2  # it grew in the chat before it was complete
