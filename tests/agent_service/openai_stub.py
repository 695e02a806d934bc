"""A stand-in OpenAI-compatible server, for the faults real servers won't produce on demand.

Written from the OpenAI API reference for `POST /v1/chat/completions`: a non-streamed answer is
a `chat.completion` object; a streamed one is Server-Sent Events, each `data:` a
`chat.completion.chunk` whose `choices[0].delta` carries `content` or `tool_calls` fragments
(`index`, then `id`/`type`/`function.name` once, then `function.arguments` piece by piece),
a last chunk with `finish_reason`, then `data: [DONE]`. Errors are
`{"error": {"message", "type", "param", "code"}}` with the HTTP status (429 with `retry-after`).

Run as a real uvicorn process (`openai_stub_process()`), so faults happen on real sockets.
`POST /control {"script": [step, ...]}` queues what the next requests get, in order;
with an empty queue the answer is the default echo (below). A step is a dict:

- `{"reply": "text"}`: answer the text (streamed word by word when asked to stream)
- `{"tools": [{"text"?, "buttons": [...]}, ...], "content"?: "..."}`: `show_buttons` calls,
  streamed with arguments in 5-character fragments, the calls' fragments interleaved
- `{"status": 429, "headers": {...}, "message": "..."}`: an error answer
- `{"cut_after": n}`: n content chunks, then half an event, then the connection dropped
- `{"error_after": n}`: n content chunks, then an `{"error": ...}` event
- `{"stall": true}`: never answer; records when the client gives up
- `{"slow": seconds}`: the default reply, one word every `seconds` (for cancellation tests)
- `{"json_for_stream": true}`: a plain completion even when a stream was asked for
- any step may add `"split": true`: every SSE event is written in pieces of a few bytes, with
  line breaks as `\r\n`, so events arrive split across network reads

`GET /requests` lists what was received: the body, the `authorization` header, and `closed`
(the client went away before the answer was complete) / `completed`.
The default echo: `Upstream heard: <last user message>`, plus `(first: <first user message>)`
when the conversation has more than one user message, so tests can see history arrive.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import ServerProcess, wait_until

state: dict[str, Any] = {"script": [], "requests": []}
MODEL = "stub-model"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _event(data: dict[str, Any] | str, crlf: bool = False) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    nl = "\r\n" if crlf else "\n"
    return f"data: {text}{nl}{nl}".encode()


def default_reply(body: dict[str, Any]) -> str:
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    reply = f"Upstream heard: {users[-1] if users else ''}"
    if len(users) > 1:
        reply += f" (first: {users[0]})"
    return reply


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _tool_fragments(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks for several show_buttons calls, their argument fragments interleaved by index."""
    chunks = [
        _chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": i,
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "show_buttons", "arguments": ""},
                    }
                ],
            }
        )
        for i in range(len(tools))
    ]
    pieces = [
        [json.dumps(args)[j : j + 5] for j in range(0, len(json.dumps(args)), 5)] for args in tools
    ]
    for step in range(max(len(p) for p in pieces)):
        for i, fragments in enumerate(pieces):
            if step < len(fragments):
                chunks.append(
                    _chunk(
                        {"tool_calls": [{"index": i, "function": {"arguments": fragments[step]}}]}
                    )
                )
    return chunks


def completion(content: str | None, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tools:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": "show_buttons", "arguments": json.dumps(args)},
            }
            for i, args in enumerate(tools)
        ]
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tools else "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


async def _until_disconnect(request: Request, limit: float = 120.0) -> None:
    try:
        async with asyncio.timeout(limit):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass


async def chat_completions(request: Request) -> Response:
    body = await request.json()
    record: dict[str, Any] = {
        "body": body,
        "authorization": request.headers.get("authorization"),
        "closed": False,
        "completed": False,
    }
    state["requests"].append(record)
    step: dict[str, Any] = state["script"].pop(0) if state["script"] else {}

    if "status" in step:
        record["completed"] = True
        error = {
            "message": step.get("message", "stub error"),
            "type": step.get("type", "server_error"),
            "param": None,
            "code": step.get("code"),
        }
        return JSONResponse(
            {"error": error}, status_code=step["status"], headers=step.get("headers")
        )
    if step.get("stall"):
        await _until_disconnect(request)
        record["closed"] = True
        return Response(status_code=204)

    stream = bool(body.get("stream"))
    content = step.get("reply", step.get("content"))
    tools = step.get("tools")
    if content is None and not tools:
        content = default_reply(body)
    if not stream or step.get("json_for_stream"):
        record["completed"] = True
        return JSONResponse(completion(content, tools))

    chunks = [_chunk({"role": "assistant", "content": ""})]
    chunks += [_chunk({"content": w}) for w in _words(content or "")] if content else []
    if tools:
        chunks += _tool_fragments(tools)
    chunks.append(_chunk({}, "tool_calls" if tools else "stop"))
    return StreamingResponse(_stream(record, step, chunks), media_type="text/event-stream")


async def _stream(
    record: dict[str, Any], step: dict[str, Any], chunks: list[dict[str, Any]]
) -> AsyncIterator[bytes]:
    split = bool(step.get("split"))
    try:
        for n, chunk in enumerate(chunks):
            if "cut_after" in step and n > step["cut_after"]:
                yield _event(chunk)[:17]  # half an event...
                raise ConnectionAbortedError("stub: connection cut mid-event")  # ...then drop
            if "error_after" in step and n > step["error_after"]:
                yield _event(
                    {"error": {"message": "stub: the model crashed", "type": "server_error"}}
                )
                record["completed"] = True
                return
            if step.get("slow") and n:
                await asyncio.sleep(float(step["slow"]))
            data = _event(chunk, crlf=split)
            if split:
                for i in range(0, len(data), 16):
                    yield data[i : i + 16]
                    await asyncio.sleep(0.001)  # separate writes, so separate network reads
            else:
                yield data
        yield _event("[DONE]")
        record["completed"] = True
    except asyncio.CancelledError:
        record["closed"] = True  # the client closed the connection mid-stream
        raise


async def control(request: Request) -> Response:
    body = await request.json()
    if body.get("clear"):
        state["requests"] = []
        state["script"] = []
    state["script"] += list(body.get("script", []))
    return JSONResponse({"queued": len(state["script"])})


async def requests_(_: Request) -> Response:
    return JSONResponse(state["requests"])


async def models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models),
        Route("/control", control, methods=["POST"]),
        Route("/requests", requests_),
    ]
)


def openai_stub_process() -> ServerProcess:
    """A not-yet-started stand-in; its OpenAI base URL is `<url>/v1`."""
    return ServerProcess(
        "tests.agent_service.openai_stub:app", name="openai_stub", ready_path="/v1/models"
    )


class Stub:
    """Control of the stand-in upstream."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    @property
    def base(self) -> str:
        return self.server.url + "/v1"

    def script(self, *steps: dict[str, Any]) -> None:
        httpx.post(self.server.url + "/control", json={"script": list(steps)}).raise_for_status()

    def clear(self) -> None:
        httpx.post(self.server.url + "/control", json={"clear": True}).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.server.url + "/requests").json())

    def last(self) -> dict[str, Any]:
        found = self.requests()
        assert found, "the stand-in upstream received no request"
        return found[-1]

    def wait_closed(self, timeout: float = 5.0) -> dict[str, Any]:
        """The last request, once the stand-in has seen its client go away."""
        wait_until(
            lambda: self.requests() and self.last()["closed"],
            timeout=timeout,
            what="upstream connection closed",
        )
        return self.last()
