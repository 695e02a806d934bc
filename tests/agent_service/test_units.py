"""In-process checks of the pieces: SSE reassembly byte by byte, tool calls, Retry-After, prompt."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent_service.backends.base import Delta, Final, Progress, UpstreamBusy, UpstreamFailed
from agent_service.backends.openai_compat import (
    OpenAIBackend,
    ToolCalls,
    UpstreamConfig,
    actions_from_tool_calls,
    retry_after,
)
from agent_service.backends.prompt import build_messages
from agent_service.schemas import RespondIn

CONFIG = UpstreamConfig(
    base_url="http://upstream.test/v1",
    api_key=None,
    model="m",
    system_prompt="sys",
    temperature=None,
    max_tokens=0,
    history_budget=1000,
    tools=False,
    timeout=5,
    extra_body={"max_completion_tokens": 10, "model": "overridden"},
)


def sse_body(*chunks: dict[str, Any] | str) -> bytes:
    out = b""
    for chunk in chunks:
        data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
        out += f"data: {data}\r\n\r\n".encode()
    return out


def content(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


FINISH = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


class ByteStream(httpx.AsyncByteStream):
    """The body one byte per read: every SSE event, line end and UTF-8 character split."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(len(self.data)):
            yield self.data[i : i + 1]


async def run(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> list[Any]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            status,
            headers={"content-type": "text/event-stream", **(headers or {})},
            stream=ByteStream(body),
        )

    backend = OpenAIBackend(CONFIG, transport=httpx.MockTransport(handler))
    await backend.start()
    try:
        events = [e async for e in backend.answer(RespondIn(text="hi"), stream=True)]
    finally:
        await backend.close()
    sent = json.loads(seen[0].content)
    assert sent["model"] == "overridden" and sent["max_completion_tokens"] == 10  # extra body
    assert "temperature" not in sent and "max_tokens" not in sent and "tools" not in sent
    return events


async def test_sse_split_at_every_byte_is_reassembled() -> None:
    pieces = ["Chào ", "bạn 👋", ", ", "thế giới"]
    events = await run(sse_body(*(content(p) for p in pieces), FINISH, "[DONE]"))
    assert events == [*(Delta(p) for p in pieces), Final("".join(pieces), [])]


async def test_streamed_tool_call_fragments_split_at_every_byte() -> None:
    args = json.dumps({"text": "Pick", "buttons": [{"text": "Ja", "data": "yes"}]})
    first = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "show_buttons", "arguments": ""},
    }
    chunks: list[dict[str, Any] | str] = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]}
    ]
    for i in range(0, len(args), 3):
        frag = {"index": 0, "function": {"arguments": args[i : i + 3]}}
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [frag]}}]})
    chunks += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}, "[DONE]"]
    events = [e for e in await run(sse_body(*chunks)) if not isinstance(e, Progress)]
    assert events == [Delta("Pick"), Final("Pick", [{"text": "Ja", "data": "yes"}])]


async def test_a_stream_that_stops_without_finishing_is_a_failure() -> None:
    with pytest.raises(UpstreamFailed, match="ended before the answer was complete"):
        await run(sse_body(content("half")))


async def test_an_error_status_on_a_stream_request() -> None:
    body = json.dumps({"error": {"message": "slow down", "type": "requests"}}).encode()
    with pytest.raises(UpstreamBusy) as info:
        await run(
            body, status=429, headers={"content-type": "application/json", "retry-after": "3"}
        )
    assert info.value.retry_after == 3 and "slow down" in info.value.reason


def test_tool_calls_reassembled_by_index_even_interleaved() -> None:
    calls = ToolCalls()
    calls.add(
        [{"index": 1, "id": "b", "function": {"name": "show_buttons", "arguments": '{"butt'}}]
    )
    calls.add(
        [
            {
                "index": 0,
                "id": "a",
                "function": {"name": "show_buttons", "arguments": '{"buttons": ['},
            }
        ]
    )
    calls.add([{"index": 1, "function": {"arguments": 'ons": ["B"]}'}}])
    calls.add([{"index": 0, "function": {"arguments": '"A"]}'}}])
    assert actions_from_tool_calls(calls.ordered()) == ("", ["A", "B"])


def test_tool_calls_without_index_and_with_object_arguments() -> None:
    calls = ToolCalls()
    calls.add([{"function": {"name": "show_buttons", "arguments": {"buttons": [{"text": "X"}]}}}])
    assert actions_from_tool_calls(calls.ordered()) == ("", [{"text": "X", "data": "X"}])


@pytest.mark.parametrize(
    "arguments",
    ["{not json", "[1, 2]", '{"buttons": "nope"}', '{"buttons": [{"data": "no label"}, 5]}'],
)
def test_bad_tool_arguments_lose_the_buttons_only(arguments: str) -> None:
    calls = ToolCalls()
    calls.add([{"index": 0, "function": {"name": "show_buttons", "arguments": arguments}}])
    assert actions_from_tool_calls(calls.ordered()) == ("", [])


def test_unknown_tools_and_unsafe_urls_are_ignored() -> None:
    calls = ToolCalls()
    calls.add([{"index": 0, "function": {"name": "rm_rf", "arguments": "{}"}}])
    buttons = {"buttons": [{"text": "Evil", "url": "javascript:alert(1)"}]}
    calls.add(
        [{"index": 1, "function": {"name": "show_buttons", "arguments": json.dumps(buttons)}}]
    )
    assert actions_from_tool_calls(calls.ordered()) == ("", [{"text": "Evil", "data": "Evil"}])


def test_buttons_are_capped() -> None:
    calls = ToolCalls()
    many = {"buttons": [f"b{i}" for i in range(40)]}
    calls.add([{"index": 0, "function": {"name": "show_buttons", "arguments": json.dumps(many)}}])
    assert len(actions_from_tool_calls(calls.ordered())[1]) == 24


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7),
        ({"retry-after": "0.2"}, 1),
        ({"retry-after-ms": "2500"}, 3),
        ({"retry-after-ms": "x", "retry-after": "4"}, 4),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30),
        ({"retry-after": "99999"}, 3600),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: int | None) -> None:
    now = 1445412480.0  # 07:28:00 that day
    assert retry_after(httpx.Headers(headers), now=now) == expected


def test_messages_merge_consecutive_roles_and_open_with_the_person() -> None:
    request = RespondIn(
        text="now",
        history=[
            {"direction": "out", "text": "a greeting nobody asked for"},
            {"direction": "in", "text": "one"},
            {"direction": "in", "text": "two (the answer to one failed)"},
            {"direction": "out", "text": "  "},
            {"direction": "system", "text": "unknown direction"},
        ],
    )
    assert build_messages(request, "", 1000) == [
        {"role": "user", "content": "one\n\ntwo (the answer to one failed)\n\nnow"},
    ]


def test_budget_zero_sends_no_history() -> None:
    request = RespondIn(text="now", history=[{"direction": "in", "text": "old"}])
    assert build_messages(request, "sys", 0) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "now"},
    ]


def test_parts_fill_an_empty_text() -> None:
    request = RespondIn(text="", parts=[{"text": "a"}, {"text": None}, {"text": "b"}])
    assert build_messages(request, "", 10)[-1]["content"] == "a\nb"
