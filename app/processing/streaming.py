"""A reply that grows in the chat while the agent writes it, and stops when the user says so.

With an agent that streams (SSE, `AgentClient.stream`), the answer is shown as it is written:

- `STREAM_MODE=edit` (default): the first piece of text is sent as a message, later text is
  written over it (`editMessageText`) at most once per `STREAM_EDIT_INTERVAL` (private chats)
  or `STREAM_GROUP_EDIT_INTERVAL` (groups, where Telegram allows about 20 edits a minute), and
  never with unchanged text. The final text then goes through the outbox like any reply,
  written over the preview (its first part; a text over 4096 characters continues in further
  messages, split as usual, the keyboard on the last one).
- `STREAM_MODE=draft` (private chats; elsewhere it falls back to edit): Telegram's own
  streaming bubble (`sendMessageDraft`, one `draft_id` per reply, with `can_stop` so the user
  gets Telegram's stop button); the final text is then sent as a message.
- `STREAM_MODE=off`: one message when the reply is complete.

Previews are best effort (`app.delivery.previews`): skipped during flood waits and never at the
final text's expense. "typing…" is shown until the first piece arrives, not after.

Stop: `/stop`, or Telegram's stop button (`stopped_message_generation`), cancels the running
call at once through `Cancellations` (the dispatcher does not wait for the chat's queue): the
agent's stream is closed (the agent stops generating), what was shown is kept as the reply, and
the history records it as stopped. On PostgreSQL, where another replica may have received the
stop, the turn also looks for a pending stop in its chat's inbox every second.

Crash safety: the preview's id is saved in the step record the moment the preview exists, so a
process that dies mid-stream resumes by writing the regenerated answer over that same message,
instead of leaving an orphan and sending a second bubble.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.agent_client import AgentClient, AgentReply
from app.delivery.split import MESSAGE_LIMIT, split_text
from app.logger import get_logger
from app.processing.cancel import Cancellations, Cancelled
from app.processing.progress import StepRecord, StreamRecord
from app.storage.inbox import NewUpdate
from app.utils import is_stop, parse_update

log = get_logger(__name__)

#: The reply when the user stopped before anything was shown.
STOPPED_TEXT = "⏹ Stopped."
#: How often a turn looks for a stop another replica received (PostgreSQL only).
STOP_POLL_SECONDS = 1.0


class PreviewPort(Protocol):
    """What streaming needs from the delivery engine (`Delivery.previews`, `Delivery.typing`)."""

    async def send(self, chat_id: int, text: str, **params: Any) -> int | None: ...

    async def edit(self, chat_id: int, message_id: int, text: str, **params: Any) -> bool: ...

    async def draft(self, chat_id: int, draft_id: int, text: str, *, can_stop: bool) -> bool: ...


@dataclass(frozen=True)
class StreamConfig:
    mode: str = "edit"  # "edit" | "draft" | "off"
    interval: float = 1.0
    group_interval: float = 3.0


@dataclass(frozen=True)
class Answer:
    """The agent's reply, and what streaming added to it."""

    reply: AgentReply
    preview_id: int | None = None  # the message the final text is written over (edit mode)
    stopped_by: int | None = None  # the update id of the stop, when the user stopped it
    stopped: bool = False


def preview_text(text: str) -> str:
    """What the preview shows: the text, or its first message's worth while it grows past."""
    parts = split_text(text, MESSAGE_LIMIT - 2)
    return parts[0] if len(parts) == 1 else parts[0] + " …"


def stop_requested(row: NewUpdate) -> bool:
    """Whether a just-stored update is a stop (cheap: most rows are not even parsed)."""
    if row.kind == "stopped_message_generation":
        return True
    if row.kind != "message" or '"/stop' not in row.payload:
        return False
    try:
        return is_stop(parse_update(json.loads(row.payload)))
    except ValueError:
        return False


def _stop_id(reason: str) -> int | None:
    kind, _, value = reason.partition(":")
    return int(value) if kind == "stop" and value.isdigit() else None


class Streamer:
    """Asks the agent for one reply, streaming it into the chat (see the module docstring)."""

    def __init__(
        self,
        agent: AgentClient,
        previews: PreviewPort,
        typing: Callable[..., contextlib.AbstractAsyncContextManager[None]],
        cancellations: Cancellations,
        config: StreamConfig,
        *,
        pending_stop: Callable[[str, int], Awaitable[int | None]] | None = None,
    ) -> None:
        self.agent = agent
        self.previews = previews
        self.typing = typing
        self.cancellations = cancellations
        self.config = config
        self.pending_stop = pending_stop

    def streams(self) -> bool:
        return self.config.mode != "off" and self.agent.base is not None

    async def answer(
        self,
        record: StepRecord,
        *,
        user: dict[str, Any],
        text: str,
        chat_id: int,
        business: str | None = None,
        **request: Any,
    ) -> Answer:
        """The reply; streamed when the agent and the mode allow, stoppable either way.

        A Telegram Business chat (`business`: its connection id) is answered in one message (previews there would need the
        connection on every call): its typing goes through the connection, the rest as `off`.
        A cancellation other than a stop (a turn interrupted by a new message) is the caller's.
        """
        watcher = self._watch(record)
        view = _View(self, record, chat_id)
        try:
            with self.cancellations.scope(record.chat_key):
                if not self.streams() or business:
                    async with self.typing(chat_id, business):
                        reply = await self.agent.respond(user, text, chat_id=chat_id, **request)
                    return Answer(reply)
                return await self._stream(view, user, text, chat_id, request)
        except Cancelled as stop:
            if _stop_id(stop.reason) is None and not stop.reason.startswith("stop"):
                raise
            return self._stopped(view, stop.reason)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _stream(
        self,
        view: _View,
        user: dict[str, Any],
        text: str,
        chat_id: int,
        request: dict[str, Any],
    ) -> Answer:
        saved = view.record.progress.get("stream")
        if saved is not None:
            view.resume(saved)
        async with contextlib.AsyncExitStack() as typing:
            await typing.enter_async_context(self.typing(chat_id))
            async for item in self.agent.stream(user, text, chat_id=chat_id, **request):
                if isinstance(item, AgentReply):
                    await typing.aclose()
                    return Answer(item, view.preview_id)
                if not view.shown:
                    await typing.aclose()  # typing until the first piece, not after
                await view.grow(item)
        raise AssertionError("AgentClient.stream always ends with a reply")

    def _stopped(self, view: _View, reason: str) -> Answer:
        """Keep what was shown; the preview (if any) gets it as its final text."""
        shown = view.shown
        log.info("reply stopped by the user", extra={"event": "reply_stopped", "chars": len(shown)})
        reply = AgentReply(shown if shown.strip() else STOPPED_TEXT, [], "agent")
        return Answer(reply, view.preview_id, _stop_id(reason), stopped=True)

    def _watch(self, record: StepRecord) -> asyncio.Task[None] | None:
        """A stop another replica received reaches this turn through the inbox."""
        seq = getattr(record, "seq", None)
        if self.pending_stop is None or seq is None:
            return None
        chat_key, lookup = record.chat_key, self.pending_stop

        async def poll() -> None:
            while True:
                await asyncio.sleep(STOP_POLL_SECONDS)
                try:
                    stop = await lookup(chat_key, seq)
                except Exception as exc:
                    log.debug("stop lookup failed", extra={"error": repr(exc)})
                    continue
                if stop is not None:
                    self.cancellations.cancel(chat_key, f"stop:{stop}")
                    return

        return asyncio.create_task(poll(), name=f"stop-watch-{chat_key}")


class _View:
    """What the chat shows of one streamed reply, and when to show more."""

    def __init__(self, streamer: Streamer, record: StepRecord, chat_id: int) -> None:
        self.streamer = streamer
        self.record = record
        self.chat_id = chat_id
        config = streamer.config
        self.interval = config.interval if chat_id > 0 else config.group_interval
        self.mode = config.mode if config.mode != "draft" or chat_id > 0 else "edit"
        self.shown = ""  # the text received so far
        self.on_screen = ""  # the text the last successful preview put on the screen
        self.preview_id: int | None = None
        base = record.update_id if record.update_id is not None else int(time.time())
        self.draft_id = base % 2_000_000_000 + 1
        self.last = 0.0

    def resume(self, saved: StreamRecord) -> None:
        """A restarted turn: keep writing into the preview that is already in the chat."""
        self.preview_id = saved.get("message_id")
        self.draft_id = saved.get("draft_id", self.draft_id)

    async def grow(self, piece: str) -> None:
        self.shown += piece
        now = time.monotonic()
        if self.on_screen and now - self.last < self.interval:
            return
        text = preview_text(self.shown)
        if not text.strip() or text == self.on_screen:
            return
        self.last = now
        previews = self.streamer.previews
        if self.mode == "draft":
            if await previews.draft(self.chat_id, self.draft_id, text, can_stop=True):
                if not self.on_screen:
                    await self._remember(StreamRecord(draft_id=self.draft_id))
                self.on_screen = text
        elif self.preview_id is None:
            self.preview_id = await previews.send(self.chat_id, text)
            if self.preview_id is not None:
                await self._remember(StreamRecord(message_id=self.preview_id))
                self.on_screen = text
        elif await previews.edit(self.chat_id, self.preview_id, text):
            self.on_screen = text

    async def _remember(self, stream: StreamRecord) -> None:
        self.record.progress["stream"] = stream
        await self.record.save()
