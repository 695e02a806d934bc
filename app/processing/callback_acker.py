"""Answer pressed buttons at once, ahead of the chat's queue, and exactly once.

A pressed inline button shows a spinner until the bot calls `answerCallbackQuery`. The update
itself must wait its turn in the chat (an earlier message may still be with the agent), but the
spinner should not: right after the inbox commit, the acker answers every new callback query.
When the pipeline reaches the update it asks again (the acker may have failed, or the process
restarted first).

Both ask through `Inbox.claim_callback_answers`, a conditional UPDATE on the update's row: the
first asker, in any process, wins and calls Telegram; everyone after finds it taken. So a query
is answered once, not once by the acker and once more by the pipeline (seen against a
third-party emulator before). A crash between the claim and the call leaves the spinner to
Telegram's own timeout: at most once, never twice.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from app.errors import TelegramClientError
from app.logger import get_logger
from app.storage.inbox import Inbox, NewUpdate
from app.telegram_client import TelegramClient

log = get_logger(__name__)


class CallbackAcker:
    def __init__(self, telegram: TelegramClient, inbox: Inbox) -> None:
        self.telegram = telegram
        self.inbox = inbox
        self._queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="callback-acker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def on_commit(self, rows: list[NewUpdate]) -> None:
        """Called by the ingest writer with the rows it just committed."""
        for row in rows:
            if row.kind != "callback_query":
                continue
            try:
                query_id = orjson.loads(row.payload)["callback_query"]["id"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(query_id, str | int):
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait((row.update_id, str(query_id)))

    async def answer_once(self, update_id: int, query_id: str) -> None:
        """Answer this update's query unless someone (in any process) already claimed it."""
        if await self.inbox.claim_callback_answers([update_id]):
            await self._answer(query_id)

    async def _answer(self, query_id: str) -> None:
        """Best-effort: a stale or already-answered query must not hold anything up."""
        try:
            await self.telegram.answer_callback_query(query_id)
        except TelegramClientError as exc:
            log.info(
                "answerCallbackQuery failed (ignored)",
                extra={"status": exc.status, "description": exc.description},
            )
        except Exception as exc:  # never let the acker die
            log.warning("answerCallbackQuery error", extra={"error": repr(exc)})

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                claimed = await self.inbox.claim_callback_answers([u for u, _ in batch])
            except Exception as exc:
                log.warning("could not claim callback answers", extra={"error": repr(exc)})
                continue
            for update_id, query_id in batch:
                if update_id in claimed:
                    await self._answer(query_id)
