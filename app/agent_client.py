"""The Agent Service (the AI that writes replies), with a fallback that always answers.

`AgentClient.respond` never raises: a person who wrote to the bot gets an answer whatever the
agent does. No agent configured → a small built-in bot (welcome, help, echo). Agent down, slow,
or answering nonsense → the polite "busy, try again" of the original specification, plus a
warning log saying why (the reason is also kept in `AgentReply.error` for the history row).

The module-level `ask_agent` / `ask_agent_rich` keep the original API: inside a running app they
use its client, outside one each call opens and closes its own (`app.current`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from httpx_sse import EventSource

from app import current
from app.logger import get_logger
from app.utils import parse_command

log = get_logger(__name__)

BUSY_MESSAGE = "Agent tạm thời bận, vui lòng thử lại sau."

#: What the built-in fallback knows, shown by /start and /help; also what the gateway
#: publishes with `setMyCommands` at start (`app.processing.commands`).
FALLBACK_COMMANDS: dict[str, str] = {
    "/start": "start talking to the bot",
    "/help": "show this list of commands",
    "/new": "start a new conversation (what was said before is set aside)",
    "/stop": "stop the answer being written",
}
_ECHO_LIMIT = 3500  # keep the echo well inside Telegram's 4096-character message limit


@dataclass(frozen=True)
class AgentReply:
    """The answer to send: text, buttons (`actions`, see `app.processing.keyboards`), and where it came from."""

    text: str
    actions: list[Any] = field(default_factory=list)
    source: Literal["agent", "fallback", "busy"] = "agent"
    error: str | None = None


def _commands_list() -> str:
    return "\n".join(f"{cmd} — {what}" for cmd, what in FALLBACK_COMMANDS.items())


def fallback_reply(user: dict[str, Any] | None, text: str, command: str | None = None) -> str:
    """The built-in answers used when no agent is configured."""
    if command is None:
        command = parse_command(text.strip())[0]
    name = ""
    if isinstance(user, dict):
        for key in ("full_name", "first_name"):
            if isinstance(user.get(key), str) and user[key].strip():
                name = " " + user[key].strip()
                break
    if command == "/start":
        return f"Hello{name}! I'm here and listening.\n\nCommands I know:\n{_commands_list()}"
    if command == "/help":
        return f"Commands I know:\n{_commands_list()}"
    if command in ("/new", "/reset"):
        return "Starting a new conversation: what was said before is set aside."
    if command is not None:
        return f"Sorry, I don't know {command}.\n\nCommands I know:\n{_commands_list()}"
    if not text.strip():
        return "I got your message, but there is no text in it I can read. Send /help to see what I can do."
    echo = text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "…"
    return f"You said: {echo}\n\nSend /help to see what I can do."


class AgentClient:
    """Calls `POST {base}/api/respond`; without `base`, answers with `fallback_reply`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base: str | None,
        timeout: float,
        api_key: str | None = None,
    ) -> None:
        self.http = http
        self.base = base.rstrip("/") if base else None
        self.timeout = timeout
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"AgentClient(base={self.base!r})"

    def _busy(self, reason: str) -> AgentReply:
        log.warning("agent failed, answering busy", extra={"reason": reason})
        return AgentReply(BUSY_MESSAGE, [], "busy", error=reason)

    async def respond(self, user: dict[str, Any], text: str, **extra: Any) -> AgentReply:
        """Ask the agent what to answer; never raises (see the module docstring).

        `extra` is sent alongside ``user`` and ``text`` (chat_id, message_id, command, history...).
        """
        if self.base is None:
            command = extra.get("command")
            return AgentReply(
                fallback_reply(user, text, command if isinstance(command, str) else None),
                [],
                "fallback",
            )
        headers = {"X-API-Key": self._api_key} if self._api_key else {}
        try:
            response = await self.http.post(
                f"{self.base}/api/respond",
                json={**extra, "user": user, "text": text},
                headers=headers,
                timeout=self.timeout,
            )
        except httpx.TimeoutException as exc:
            return self._busy(f"timeout: {exc.__class__.__name__}")
        except httpx.HTTPError as exc:
            return self._busy(f"connection error: {exc.__class__.__name__}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. extra values that are not JSON-serialisable
            return self._busy(f"request error: {exc.__class__.__name__}")
        if not response.is_success:
            return self._busy(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            return self._busy("invalid JSON")
        return self._reply_from(body)

    def _reply_from(self, body: Any) -> AgentReply:
        """The contract's `{"reply", "actions"}` as an `AgentReply` (busy when unusable)."""
        if not isinstance(body, dict):
            return self._busy("response is not a JSON object")
        reply = body.get("reply")
        if not isinstance(reply, str) or not reply.strip():
            return self._busy("missing or empty reply")
        actions = body.get("actions")
        if actions is None:
            actions = []
        elif not isinstance(actions, list):
            # The text is fine; only the buttons are unusable. Keep the reply.
            log.warning("agent actions ignored: not a list", extra={"type": type(actions).__name__})
            actions = []
        return AgentReply(reply, actions, "agent")

    async def stream(
        self, user: dict[str, Any], text: str, **extra: Any
    ) -> AsyncIterator[str | AgentReply]:
        """Ask the agent with `stream: true`: yields each piece of text as it comes, then the
        complete `AgentReply` (last, always). Never raises for the agent's faults.

        Closing the generator (or cancelling the task awaiting it) closes the HTTP stream:
        that is how a turn is cancelled (the agent stops generating). An agent that answers
        JSON yields its reply alone. A failure before any text is the busy answer; a failure
        after some text keeps what was written (`error` says why).
        """
        if self.base is None:
            yield await self.respond(user, text, **extra)
            return
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["X-API-Key"] = self._api_key
        payload = {**extra, "user": user, "text": text, "stream": True}
        shown: list[str] = []
        try:
            async with self.http.stream(
                "POST",
                f"{self.base}/api/respond",
                json=payload,
                headers=headers,
                timeout=httpx.Timeout(self.timeout, read=self.timeout),
            ) as response:
                if not response.is_success:
                    yield self._busy(f"HTTP {response.status_code}")
                    return
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    await response.aread()
                    try:
                        yield self._reply_from(response.json())
                    except ValueError:
                        yield self._busy("invalid JSON")
                    return
                async for item in self._events(response, shown):
                    yield item
                    if isinstance(item, AgentReply):
                        return
        except httpx.TimeoutException as exc:
            yield self._partial(shown, f"timeout: {exc.__class__.__name__}")
            return
        except httpx.HTTPError as exc:
            yield self._partial(shown, f"connection error: {exc.__class__.__name__}")
            return
        yield self._partial(shown, "stream ended without done")

    async def _events(
        self, response: httpx.Response, shown: list[str]
    ) -> AsyncIterator[str | AgentReply]:
        async for sse in EventSource(response).aiter_sse():
            try:
                data = json.loads(sse.data) if sse.data else {}
            except ValueError:
                yield self._partial(shown, "invalid event data")
                return
            if sse.event == "delta" and isinstance(data, dict):
                piece = data.get("text")
                if isinstance(piece, str) and piece:
                    shown.append(piece)
                    yield piece
            elif sse.event == "done":
                reply = self._reply_from(data)
                if reply.source == "busy" and shown:
                    reply = AgentReply("".join(shown), [], "agent", error=reply.error)
                yield reply
                return
            elif sse.event == "error":
                message = data.get("message") if isinstance(data, dict) else None
                yield self._partial(shown, f"agent error: {message}")
                return

    def _partial(self, shown: list[str], reason: str) -> AgentReply:
        """What was written before a failure, or the busy answer when nothing was."""
        text = "".join(shown)
        if not text.strip():
            return self._busy(reason)
        log.warning("agent stream failed; keeping the partial reply", extra={"reason": reason})
        return AgentReply(text, [], "agent", error=reason)


# --- the original module-level API ----------------------------------------------------------


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[AgentClient]:
    """The running app's client, else a one-call client from the settings (closed after)."""
    running = current.get()
    if running is not None:
        yield running.agent
        return
    from app.config import get_settings

    s = get_settings()
    async with httpx.AsyncClient() as http:
        yield AgentClient(http, s.AGENT_SERVICE_BASE, s.agent_timeout, s.AGENT_SERVICE_API_KEY)


async def ask_agent(user: dict[str, Any], text: str) -> str:
    """The reply text only (original API); see `ask_agent_rich` for buttons."""
    async with _client() as client:
        return (await client.respond(user, text)).text


async def ask_agent_rich(user: dict[str, Any], text: str, **extra: Any) -> AgentReply:
    """The full reply: text, `actions` (buttons) and its source."""
    async with _client() as client:
        return await client.respond(user, text, **extra)
