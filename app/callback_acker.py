"""Answer pressed buttons at once, ahead of the chat's queue.

A pressed inline button shows a spinner until the bot calls `answerCallbackQuery`. The update
itself must wait its turn in the chat (an earlier message may still be with the agent), but
the spinner should not: right after the inbox commit, the acker answers every new callback
query. It is best-effort: if it fails (or the process restarts first), the pipeline answers
when it reaches the update. `was_answered` lets the pipeline skip a second call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import orjson

from app.inbox import NewUpdate
from app.logger import get_logger
from app.telegram_client import TelegramClient, TelegramClientError

log = get_logger(__name__)


class CallbackAcker:
    def __init__(self, telegram: TelegramClient, *, remember: int = 10_000) -> None:
        self.telegram = telegram
        self.remember = remember
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)
        self._answered: OrderedDict[str, None] = OrderedDict()
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
            if isinstance(query_id, str) and query_id not in self._answered:
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(query_id)

    def was_answered(self, query_id: str) -> bool:
        return query_id in self._answered

    def _remember(self, query_id: str) -> None:
        self._answered[query_id] = None
        while len(self._answered) > self.remember:
            self._answered.popitem(last=False)

    async def _run(self) -> None:
        while True:
            query_id = await self._queue.get()
            if query_id in self._answered:
                continue
            try:
                await self.telegram.answer_callback_query(query_id)
            except TelegramClientError as exc:
                log.info(
                    "early answerCallbackQuery failed; the pipeline will try again",
                    extra={"status": exc.status, "description": exc.description},
                )
                continue
            except Exception as exc:  # never let the acker die
                log.warning("early answerCallbackQuery error", extra={"error": repr(exc)})
                continue
            self._remember(query_id)
