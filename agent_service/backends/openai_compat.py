"""The `openai` backend: any OpenAI-compatible Chat Completions API.

OpenAI itself, vLLM, Ollama, llama.cpp's server, LM Studio: all take `POST {base}/chat/completions`
and, with `"stream": true`, answer Server-Sent Events of `chat.completion.chunk` objects ending
with `data: [DONE]`. We speak that wire format with httpx (already the project's HTTP client)
and httpx-sse's decoder (the one the official `openai` client's own decoder was copied from),
rather than with the `openai` package: the status code, `Retry-After` and error body are ours
to map to 503/502/504 without undoing a retry layer, chunks are read as plain JSON so the small
deviations of compatible servers (no `index` on a tool call, arguments as an object, JSON
instead of a stream) are tolerated, and the service carries one HTTP stack, not two.

Buttons come from tool calls: the model is offered one function, `show_buttons`, whose
arguments become the reply's `actions`. Streamed tool-call arguments arrive in fragments keyed
by `index` and are reassembled before parsing. A malformed call loses its buttons, never the
reply.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from agent_service.backends.base import (
    AgentError,
    Delta,
    Event,
    Final,
    Progress,
    UpstreamBusy,
    UpstreamFailed,
    UpstreamRefused,
    UpstreamTimeout,
)
from agent_service.backends.prompt import build_messages
from agent_service.logs import redactor
from agent_service.schemas import RespondIn

log = logging.getLogger("agent_service.openai")

TOOL_NAME = "show_buttons"
MAX_BUTTONS = 24
DEFAULT_BUTTONS_TEXT = "Choose one:"
BUSY_STATUSES = frozenset({429, 503, 529})

SHOW_BUTTONS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Show buttons under your reply in the person's Telegram chat. Use it to offer"
            " choices; a pressed button comes back to you as the person's next message."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "The message shown above the buttons"},
                "buttons": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string", "description": "The button's label"},
                            "data": {
                                "type": "string",
                                "description": "What comes back to you when it is pressed",
                            },
                            "url": {
                                "type": "string",
                                "description": "A link to open instead (no message comes back)",
                            },
                            "row": {
                                "type": "integer",
                                "description": "Buttons with the same row share one line",
                            },
                        },
                        "required": ["text"],
                    },
                },
            },
            "required": ["buttons"],
        },
    },
}


@dataclass
class UpstreamConfig:
    base_url: str
    api_key: str | None
    model: str
    system_prompt: str
    temperature: float | None
    max_tokens: int
    history_budget: int
    tools: bool
    timeout: float
    extra_body: dict[str, Any]


# --- errors --------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 300) -> str:
    text = redactor(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_message(body: Any) -> str:
    """The human part of an error body: OpenAI's `{"error": {"message"}}`, or what there is."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(error.get(key), str):
                    return _clip(error[key])
        if isinstance(error, str):
            return _clip(error)
    if isinstance(body, str):
        return _clip(body)
    return ""


def retry_after(headers: httpx.Headers, now: float | None = None) -> int | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or a date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(1, min(3600, math.ceil(float(raw_ms) / 1000)))
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - (now if now is not None else time.time())
    if not math.isfinite(seconds):
        return None
    return max(1, min(3600, math.ceil(seconds)))


def status_error(response: httpx.Response) -> AgentError:
    """The failure an error status from the model's API stands for (the body must be read)."""
    try:
        message = error_message(response.json())
    except ValueError:
        message = _clip(response.text)
    status = response.status_code
    detail = f"HTTP {status}" + (f": {message}" if message else "")
    if status in BUSY_STATUSES:
        return UpstreamBusy(
            f"the model is overloaded or rate limited ({detail})", retry_after(response.headers)
        )
    if status == 504:
        return UpstreamTimeout(f"the model's API timed out ({detail})")
    if 400 <= status < 500:
        return UpstreamRefused(f"the model's API refused the request ({detail})")
    return UpstreamFailed(f"the model's API failed ({detail})")


def transport_error(exc: httpx.HTTPError, timeout: float) -> AgentError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"the model did not answer within {timeout:g} s")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamBusy("cannot connect to the model's API")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return UpstreamFailed("the model's API closed the connection mid-answer")
    return UpstreamFailed(f"error talking to the model's API: {exc.__class__.__name__}")


def stream_error(body: Any) -> AgentError:
    """An `{"error": ...}` object sent inside a stream (llama.cpp and vLLM do this)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    message = error_message(body) or "unknown error"
    if code in BUSY_STATUSES or "rate_limit" in kind or "overloaded" in kind:
        return UpstreamBusy(f"the model is overloaded or rate limited ({message})")
    return UpstreamFailed(f"the model failed mid-answer ({message})")


# --- tool calls ----------------------------------------------------------------------------------


class ToolCalls:
    """Streamed tool calls put back together: fragments of one call share an `index`."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, fragments: Any) -> None:
        if not isinstance(fragments, list):
            return
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                continue
            index = fragment.get("index")
            if not isinstance(index, int):
                index = position  # a server that sends whole calls without an index
            call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if isinstance(fragment.get("id"), str) and not call["id"]:
                call["id"] = fragment["id"]
            function = fragment.get("function")
            if not isinstance(function, dict):
                continue
            name = function.get("name")
            if isinstance(name, str) and name and name != call["name"]:
                call["name"] = name if not call["name"] else call["name"] + name
            args = function.get("arguments")
            if isinstance(args, str):
                call["arguments"] += args
            elif isinstance(args, dict):  # Ollama-style: an object, not a JSON string
                call["arguments"] += json.dumps(args)

    def ordered(self) -> list[dict[str, str]]:
        return [self.calls[i] for i in sorted(self.calls)]


def _button(raw: Any) -> Any | None:
    if isinstance(raw, str):
        return raw if raw.strip() else None
    if not isinstance(raw, dict):
        return None
    label = raw.get("text")
    if not isinstance(label, str) or not label.strip():
        return None
    button: dict[str, Any] = {"text": label}
    url, data = raw.get("url"), raw.get("data")
    if isinstance(url, str) and url.startswith(("https://", "http://", "tg://")):
        button["url"] = url
    else:
        button["data"] = data if isinstance(data, str) and data else label
    row = raw.get("row")
    if isinstance(row, int) and not isinstance(row, bool):
        button["row"] = row
    return button


def actions_from_tool_calls(calls: list[dict[str, str]]) -> tuple[str, list[Any]]:
    """The text and buttons the model asked for through `show_buttons` calls."""
    text, actions = "", []
    for call in calls:
        if call["name"] != TOOL_NAME:
            log.info("ignored a call of an unknown tool", extra={"tool": call["name"][:64]})
            continue
        try:
            args = json.loads(call["arguments"] or "{}")
        except ValueError:
            log.warning("show_buttons arguments are not valid JSON; buttons dropped")
            continue
        if not isinstance(args, dict):
            log.warning("show_buttons arguments are not an object; buttons dropped")
            continue
        if isinstance(args.get("text"), str) and args["text"].strip() and not text:
            text = args["text"].strip()
        buttons = args.get("buttons")
        for raw in buttons if isinstance(buttons, list) else []:
            button = _button(raw)
            if button is not None:
                actions.append(button)
    if len(actions) > MAX_BUTTONS:
        log.warning("too many buttons; extra ones dropped", extra={"count": len(actions)})
        actions = actions[:MAX_BUTTONS]
    return text, actions


def _content_text(content: Any) -> str:
    """`content` as text: a string, or a list of `{"type": "text", "text": ...}` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def final_from_completion(body: Any) -> Final:
    """The answer in a non-streamed `chat.completion`."""
    if not isinstance(body, dict):
        raise UpstreamFailed("the model's API answered something that is not a completion")
    if body.get("error"):
        raise stream_error(body)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamFailed("the model's API answered a completion without choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise UpstreamFailed("the model's API answered a choice without a message")
    calls = ToolCalls()
    calls.add(message.get("tool_calls"))
    tool_text, actions = actions_from_tool_calls(calls.ordered())
    reply = _content_text(message.get("content"))
    return Final(reply + _missing_text(reply, tool_text, actions), actions)


def _missing_text(reply: str, tool_text: str, actions: list[Any]) -> str:
    """What to add to a reply with no visible text: the tool's text, or a default for buttons.

    The gateway cannot send an empty message, and a model that answers only with a tool call
    (common) leaves `content` empty; a reply empty on every count is the model's failure.
    """
    if reply.strip():
        return ""
    extra = tool_text or (DEFAULT_BUTTONS_TEXT if actions else "")
    if not extra:
        raise UpstreamFailed("the model returned an empty reply")
    return extra


# --- the backend ---------------------------------------------------------------------------------


class OpenAIBackend:
    name = "openai"

    def __init__(
        self, config: UpstreamConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.transport = transport
        self._http: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return self.config.base_url.rstrip("/") + "/chat/completions"

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        t = self.config.timeout
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(t, connect=min(t, 10.0)),
            transport=self.transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("OpenAIBackend.start() was not awaited")
        return self._http

    def payload(self, request: RespondIn, stream: bool) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {
            "model": c.model,
            "messages": build_messages(request, c.system_prompt, c.history_budget),
            "stream": stream,
        }
        if c.temperature is not None:
            body["temperature"] = c.temperature
        if c.max_tokens:
            body["max_tokens"] = c.max_tokens
        if c.tools:
            body["tools"] = [SHOW_BUTTONS_TOOL]
        return {**body, **c.extra_body}

    async def answer(self, request: RespondIn, *, stream: bool) -> AsyncIterator[Event]:
        payload = self.payload(request, stream)
        if not stream:
            yield await self._complete(payload)
            return
        async for event in self._stream(payload):
            yield event

    async def _complete(self, payload: dict[str, Any]) -> Final:
        try:
            response = await self.http.post(self.url, json=payload)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.timeout) from None
        if response.status_code >= 400:
            raise status_error(response)
        try:
            body = response.json()
        except ValueError:
            raise UpstreamFailed("the model's API answered invalid JSON") from None
        return final_from_completion(body)

    async def _stream(self, payload: dict[str, Any]) -> AsyncIterator[Event]:
        text: list[str] = []
        calls = ToolCalls()
        complete = False
        try:
            async with self.http.stream(
                "POST", self.url, json=payload, headers={"Accept": "text/event-stream"}
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise status_error(response)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # A server that ignores "stream": true answers one completion instead.
                    await response.aread()
                    try:
                        final = final_from_completion(response.json())
                    except ValueError:
                        raise UpstreamFailed("the model's API answered invalid JSON") from None
                    yield Delta(final.reply)
                    yield final
                    return
                async for sse in EventSource(response).aiter_sse():
                    data = sse.data.strip()
                    if not data:
                        continue
                    if data == "[DONE]":
                        complete = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise UpstreamFailed("the model's stream carried invalid JSON") from None
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        raise stream_error(chunk)
                    for choice in chunk.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        delta = choice.get("delta")
                        if isinstance(delta, dict):
                            piece = _content_text(delta.get("content"))
                            if piece:
                                text.append(piece)
                                yield Delta(piece)
                            elif delta.get("tool_calls"):
                                yield Progress()
                            calls.add(delta.get("tool_calls"))
                        if choice.get("finish_reason"):
                            complete = True
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.timeout) from None
        except SSEError:
            raise UpstreamFailed("the model's API did not answer with a stream") from None
        if not complete:
            raise UpstreamFailed("the model's stream ended before the answer was complete")
        reply = "".join(text)
        tool_text, actions = actions_from_tool_calls(calls.ordered())
        extra = _missing_text(reply, tool_text, actions)
        if extra:  # text that did not come as deltas (the tool's): sent as one more
            yield Delta(extra)
        yield Final(reply + extra, actions)
