"""AgentClient: replies, busy on every kind of failure (never an exception), fallback bot."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from app.agent_client import BUSY_MESSAGE, AgentClient, AgentReply

BASE = "http://agent.test"
USER = {"id": "u1", "full_name": "Ann Lee"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def agent(http: httpx.AsyncClient) -> AgentClient:
    return AgentClient(http, BASE, timeout=2, api_key="agent-key-xyz")


@respx.mock
async def test_reply_with_actions_and_extra_fields(agent: AgentClient) -> None:
    actions = [{"text": "Yes", "data": "answer:yes"}]
    route = respx.post(f"{BASE}/api/respond").mock(
        return_value=httpx.Response(200, json={"reply": "Hi Ann", "actions": actions})
    )
    reply = await agent.respond(USER, "hello", chat_id=5, message_id=9, history=[{"x": 1}])
    assert reply == AgentReply("Hi Ann", actions, "agent")
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "user": USER,
        "text": "hello",
        "chat_id": 5,
        "message_id": 9,
        "history": [{"x": 1}],
    }
    assert route.calls.last.request.headers["X-API-Key"] == "agent-key-xyz"


@respx.mock
async def test_reply_without_actions(agent: AgentClient) -> None:
    respx.post(f"{BASE}/api/respond").mock(return_value=httpx.Response(200, json={"reply": "ok"}))
    assert await agent.respond(USER, "x") == AgentReply("ok", [], "agent")


@respx.mock
async def test_bad_actions_keep_the_reply(
    agent: AgentClient, caplog: pytest.LogCaptureFixture
) -> None:
    respx.post(f"{BASE}/api/respond").mock(
        return_value=httpx.Response(200, json={"reply": "ok", "actions": "Yes"})
    )
    assert await agent.respond(USER, "x") == AgentReply("ok", [], "agent")
    assert "not a list" in caplog.text


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.ReadTimeout("slow"), "timeout: ReadTimeout"),
        (httpx.ConnectTimeout("slow"), "timeout: ConnectTimeout"),
        (httpx.ConnectError("refused"), "connection error: ConnectError"),
        (httpx.Response(500, json={"reply": "x"}), "HTTP 500"),
        (httpx.Response(404), "HTTP 404"),
        (httpx.Response(200, text="<html>"), "invalid JSON"),
        (httpx.Response(200, json=["reply"]), "response is not a JSON object"),
        (httpx.Response(200, json={"answer": "x"}), "missing or empty reply"),
        (httpx.Response(200, json={"reply": "  "}), "missing or empty reply"),
        (httpx.Response(200, json={"reply": 5}), "missing or empty reply"),
    ],
)
@respx.mock
async def test_busy_on_failure(
    agent: AgentClient,
    response: httpx.Response | Exception,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = respx.post(f"{BASE}/api/respond")
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    caplog.set_level(logging.WARNING)
    reply = await agent.respond(USER, "hello")
    assert reply == AgentReply(BUSY_MESSAGE, [], "busy", error=reason)
    assert any(getattr(r, "reason", None) == reason for r in caplog.records)
    assert "agent-key-xyz" not in caplog.text


@respx.mock
async def test_unserialisable_extra_is_busy_not_an_exception(agent: AgentClient) -> None:
    respx.post(f"{BASE}/api/respond").mock(return_value=httpx.Response(200, json={"reply": "x"}))
    reply = await agent.respond(USER, "x", thing=object())
    assert reply.source == "busy" and reply.error == "request error: TypeError"


async def test_real_timeout_is_busy(http: httpx.AsyncClient) -> None:
    # A port that accepts nothing: connection refused, no respx involved.
    from tests.support.servers import free_port

    agent = AgentClient(http, f"http://127.0.0.1:{free_port()}", timeout=0.5)
    reply = await agent.respond(USER, "x")
    assert reply.source == "busy" and reply.error is not None


async def test_fallback_answers(http: httpx.AsyncClient) -> None:
    agent = AgentClient(http, None, timeout=1)
    start = await agent.respond(USER, "/start")
    assert start.source == "fallback" and start.actions == [] and start.error is None
    assert "Ann Lee" in start.text and "/help" in start.text and "/start" in start.text
    helped = await agent.respond(USER, "/help@my_bot")
    assert "/start" in helped.text and "/help" in helped.text
    echo = await agent.respond(USER, "how are you?")
    assert echo.text.startswith("You said: how are you?") and "/help" in echo.text
    unknown = await agent.respond(USER, "/weather paris")
    assert "/weather" in unknown.text and "/help" in unknown.text
    empty = await agent.respond(USER, "")
    assert empty.text and "/help" in empty.text
    sticker = await agent.respond({}, "[sticker 😀]")
    assert "[sticker 😀]" in sticker.text
    long = await agent.respond(USER, "x" * 5000)
    assert len(long.text) < 4096
    # A command passed explicitly wins over the text.
    assert "Commands" in (await agent.respond(USER, "anything", command="/help")).text
