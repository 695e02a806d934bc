"""The `openai` backend against the stand-in upstream: what it sends, and every fault it maps.

Faults real servers will not produce on demand (429 with retry-after, 5xx, a stream cut
mid-event, a stall past the timeout, events split across network reads, streamed tool calls
interleaved by index) come from tests/agent_service/openai_stub.py over real sockets.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.agent_service.conftest import UPSTREAM_KEY, UPSTREAM_TIMEOUT, Agent, joined
from tests.agent_service.openai_stub import Stub
from tests.support.agent_service import agent_service_process
from tests.support.servers import free_port

HISTORY = [
    {"direction": "in", "text": "first question", "created_at": "t1"},
    {"direction": "out", "text": "first answer", "created_at": "t2"},
    {"direction": "in", "text": "second question", "created_at": "t3"},
    {"direction": "out", "text": "second answer", "created_at": "t4"},
]
BUTTONS_ARGS: dict[str, Any] = {
    "text": "Which one?",
    "buttons": [
        {"text": "Red", "data": "color:red", "row": 1},
        {"text": "Blue", "row": 1},
        {"text": "Docs", "url": "https://example.com/docs", "row": 2},
        {"text": ""},  # no label: dropped
        "Plain",
    ],
}
EXPECTED_ACTIONS = [
    {"text": "Red", "data": "color:red", "row": 1},
    {"text": "Blue", "data": "Blue", "row": 1},
    {"text": "Docs", "url": "https://example.com/docs", "row": 2},
    "Plain",
]


def turn(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"user": {"id": "u"}, "text": text, "chat_id": 1, "history": [], **extra}


# --- what goes upstream -------------------------------------------------------------------------


def test_history_becomes_messages_oldest_first_with_settings(
    openai_agent: Agent, stub: Stub
) -> None:
    response = openai_agent.post(turn("third question", history=HISTORY))
    assert response.status_code == 200
    assert response.json()["reply"] == "Upstream heard: third question (first: first question)"
    sent = stub.last()
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"
    body = sent["body"]
    assert body["model"] == "stub-model" and body["temperature"] == 0 and body["max_tokens"] == 64
    assert body["stream"] is False
    assert [t["function"]["name"] for t in body["tools"]] == ["show_buttons"]
    assert body["messages"] == [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "second answer"},
        {"role": "user", "content": "third question"},
    ]


def test_history_budget_drops_the_oldest_first(openai_agent: Agent, stub: Stub) -> None:
    old = [{"direction": "in", "text": "o" * 150}, {"direction": "out", "text": "p" * 150}]
    recent = [{"direction": "in", "text": "recent q"}, {"direction": "out", "text": "recent a"}]
    assert openai_agent.post(turn("now", history=old + recent)).status_code == 200
    messages = stub.last()["body"]["messages"]  # budget: 200 characters
    assert [m["content"] for m in messages] == ["You are a test.", "recent q", "recent a", "now"]


def test_attachments_and_button_presses_are_described_as_text(
    openai_agent: Agent, stub: Stub
) -> None:
    attachment = {
        "kind": "photo",
        "mime_type": "image/jpeg",
        "size": 1234,
        "width": 800,
        "height": 600,
        "caption": "my cat",
        "file_unique_id": "AQAD",
        "url": "http://127.0.0.1:8000/files/AQAD",
    }
    assert openai_agent.post(turn("my cat", attachments=[attachment])).status_code == 200
    assert stub.last()["body"]["messages"][-1]["content"] == (
        "my cat\n[photo: image/jpeg, 1234 bytes, 800x600, caption 'my cat', "
        "url http://127.0.0.1:8000/files/AQAD]"
    )
    assert openai_agent.post(turn("color:red", kind="callback_query")).status_code == 200
    assert stub.last()["body"]["messages"][-1]["content"] == (
        "(The person pressed the button whose data is 'color:red'.)"
    )


# --- streaming -----------------------------------------------------------------------------------


def test_stream_passes_deltas_through(openai_agent: Agent, stub: Stub) -> None:
    stub.script({"reply": "one two three four"})
    response, events = openai_agent.stream(turn())
    assert response.status_code == 200
    assert [d["text"] for n, d in events if n == "delta"] == ["one", " two", " three", " four"]
    assert events[-1] == ("done", {"reply": "one two three four", "actions": []})
    assert stub.last()["body"]["stream"] is True


def test_events_split_across_network_reads_are_reassembled(openai_agent: Agent, stub: Stub) -> None:
    text = "Xin chào, thế giới! Đây là một câu trả lời dài hơn một chút."
    stub.script({"reply": text, "split": True})
    response, events = openai_agent.stream(turn())
    assert response.status_code == 200
    assert joined(events) == events[-1][1]["reply"] == text


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_become_actions(openai_agent: Agent, stub: Stub, stream: bool) -> None:
    second = {"buttons": [{"text": "Green", "data": "color:green", "row": 3}]}
    stub.script({"tools": [BUTTONS_ARGS, second], "split": stream})
    if stream:
        response, events = openai_agent.stream(turn("pick a colour"))
        assert response.status_code == 200
        done = events[-1][1]
        assert joined(events) == done["reply"]
    else:
        response = openai_agent.post(turn("pick a colour"))
        assert response.status_code == 200
        done = response.json()
    assert done["reply"] == "Which one?"
    assert done["actions"] == [
        *EXPECTED_ACTIONS,
        {"text": "Green", "data": "color:green", "row": 3},
    ]


def test_text_and_buttons_together_keep_the_text(openai_agent: Agent, stub: Stub) -> None:
    stub.script({"content": "Here you go", "tools": [BUTTONS_ARGS]})
    _, events = openai_agent.stream(turn())
    assert events[-1][1] == {"reply": "Here you go", "actions": EXPECTED_ACTIONS}


def test_a_server_that_answers_json_to_a_stream_request_still_streams(
    openai_agent: Agent, stub: Stub
) -> None:
    stub.script({"reply": "whole answer", "json_for_stream": True})
    _, events = openai_agent.stream(turn())
    assert events == [
        ("delta", {"text": "whole answer"}),
        ("done", {"reply": "whole answer", "actions": []}),
    ]


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("step", "status", "retry_after"),
    [
        (
            {"status": 429, "headers": {"retry-after": "7"}, "message": "Rate limit reached"},
            503,
            "7",
        ),
        ({"status": 429, "headers": {"retry-after-ms": "1500"}}, 503, "2"),
        ({"status": 503, "message": "overloaded"}, 503, "5"),
        ({"status": 500, "message": "The server had an error"}, 502, None),
        ({"status": 401, "message": "Incorrect API key provided"}, 502, None),
        ({"status": 404, "message": "The model `nope` does not exist"}, 502, None),
    ],
)
def test_upstream_errors_map_to_503_or_502(
    openai_agent: Agent,
    stub: Stub,
    step: dict[str, Any],
    status: int,
    retry_after: str | None,
    stream: bool,
) -> None:
    stub.script(step)
    response = openai_agent.stream(turn())[0] if stream else openai_agent.post(turn())
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    detail = response.json()["detail"]
    assert f"HTTP {step['status']}" in detail
    if "message" in step:
        assert step["message"] in detail  # the reason reaches the caller
    if step["status"] in (401, 404):
        assert "refused" in detail


@pytest.mark.parametrize("stream", [False, True])
def test_a_stall_ends_at_the_timeout_and_closes_the_upstream_call(
    openai_agent: Agent, stub: Stub, stream: bool
) -> None:
    stub.script({"stall": True})
    started = time.monotonic()
    response = openai_agent.stream(turn())[0] if stream else openai_agent.post(turn())
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "did not" in response.json()["detail"]
    assert UPSTREAM_TIMEOUT - 0.1 <= elapsed < UPSTREAM_TIMEOUT + 2
    stub.wait_closed()


def test_a_stream_cut_mid_event_is_an_error_event(openai_agent: Agent, stub: Stub) -> None:
    stub.script({"reply": "alpha beta gamma delta", "cut_after": 2})
    response, events = openai_agent.stream(turn())
    assert response.status_code == 200  # the first delta was already on its way
    assert [n for n, _ in events] == ["delta", "delta", "error"]
    assert joined(events) == "alpha beta"
    assert "closed the connection" in events[-1][1]["message"]


def test_an_error_event_mid_stream(openai_agent: Agent, stub: Stub) -> None:
    stub.script({"reply": "alpha beta gamma", "error_after": 1})
    _, events = openai_agent.stream(turn())
    assert [n for n, _ in events] == ["delta", "error"]
    assert "stub: the model crashed" in events[-1][1]["message"]


def test_an_unreachable_upstream_is_503(tmp_path: Any) -> None:
    with agent_service_process(
        AGENT_BACKEND="openai", OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"
    ) as server:
        response = httpx.post(server.url + "/api/respond", json=turn(), timeout=10)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == "cannot connect to the model's API"


# --- cancellation --------------------------------------------------------------------------------


def test_closing_the_stream_cancels_the_upstream_call(openai_agent: Agent, stub: Stub) -> None:
    stub.script({"reply": " ".join(f"w{i}" for i in range(200)), "slow": 0.1})
    with httpx.stream(
        "POST",
        openai_agent.url + "/api/respond",
        json=turn(stream=True),
        headers=openai_agent.headers,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                break  # one delta seen: the model is generating; now walk away
    record = stub.wait_closed(timeout=5)
    assert record["completed"] is False


def test_a_client_that_gives_up_on_a_json_answer_cancels_the_upstream_call(
    openai_agent: Agent, stub: Stub
) -> None:
    stub.script({"stall": True})
    with pytest.raises(httpx.ReadTimeout):
        openai_agent.post(turn(), timeout=httpx.Timeout(0.4))
    record = stub.wait_closed()
    assert record["completed"] is False
    # Closed because the client left, not by the agent's own deadline:
    assert "turn cancelled: the client closed the connection" in openai_agent.server.output()
