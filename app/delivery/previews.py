"""Previews of a reply being written: the message that grows while the model streams.

Not durable and never in the way of the final text, which goes through the outbox like any
reply (written over the preview: `Delivery.enqueue(edit_message_id=...)`). A preview is skipped,
not queued, whenever it would cost the final text anything:

- while the chat or the bot is in a flood wait;
- when the chat's message bucket (the one its outbox sends use) is down to its last token:
  the first preview message takes a token only when one is left for the final part after it;
- edits and drafts are not messages and take no chat token, but every preview call waits its
  turn at the bot-wide pacer, like a send;
- a 429 on a preview puts the chat in the flood wait Telegram asked for (the outbox honours it
  for the final text, and no more previews go out until it ends).

How often previews go out (`STREAM_EDIT_INTERVAL`) is the caller's decision
(`app/processing/streaming.py`).
"""

from __future__ import annotations

import time
from typing import Any

from app.delivery.ports import TelegramAPI
from app.delivery.scheduler import Scheduler
from app.errors import TelegramClientError, Verdict, classify, retry_after
from app.logger import get_logger

log = get_logger(__name__)


class Previews:
    def __init__(self, telegram: TelegramAPI, scheduler: Scheduler) -> None:
        self.telegram = telegram
        self.scheduler = scheduler
        self.calls = 0  # Bot API calls spent on previews (the bench reports them)

    async def send(self, chat_id: int, text: str, **params: Any) -> int | None:
        """The first preview: a new message; its id, or None when skipped or refused."""
        bucket = self.scheduler.budget(chat_id)
        if self.scheduler.flooded(chat_id) or bucket.tokens_now() < 2:
            return None
        await self.scheduler.pacer.acquire()
        bucket.take()
        envelope = await self._call("sendMessage", chat_id, {"text": text, **params})
        result = envelope.get("result") if envelope else None
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return message_id if isinstance(message_id, int) else None

    async def edit(self, chat_id: int, message_id: int, text: str, **params: Any) -> bool:
        """The preview message shows `text` now; False when skipped or refused."""
        if self.scheduler.flooded(chat_id):
            return False
        await self.scheduler.pacer.acquire()
        fields = {"message_id": message_id, "text": text, **params}
        return await self._call("editMessageText", chat_id, fields) is not None

    async def draft(self, chat_id: int, draft_id: int, text: str, *, can_stop: bool) -> bool:
        """A draft (Telegram's own streaming bubble, private chats); False when skipped."""
        if self.scheduler.flooded(chat_id):
            return False
        await self.scheduler.pacer.acquire()
        fields = {"draft_id": draft_id, "text": text, "can_stop": can_stop}
        return await self._call("sendMessageDraft", chat_id, fields) is not None

    async def _call(
        self, method: str, chat_id: int, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        self.calls += 1
        started = time.monotonic()
        try:
            return await self.telegram.call(method, {"chat_id": chat_id, **fields})
        except TelegramClientError as exc:
            verdict = classify(exc)
            if verdict is Verdict.NOT_MODIFIED:
                return {"ok": True, "result": True}
            if verdict is Verdict.RATE_LIMITED:
                wait = retry_after(exc) or 1.0
                self.scheduler.flood(chat_id, wait)
                log.warning(
                    "preview refused with 429; previews wait, the final text honours it",
                    extra={"chat_id": chat_id, "method": method, "retry_after": wait},
                )
            else:
                log.info(
                    "preview failed (skipped)",
                    extra={"chat_id": chat_id, "method": method, "verdict": verdict.value},
                )
            return None
        except Exception as exc:  # a preview must never fail the turn
            log.info(
                "preview failed (skipped)",
                extra={
                    "chat_id": chat_id,
                    "method": method,
                    "error": exc.__class__.__name__,
                    "ms": round((time.monotonic() - started) * 1000),
                },
            )
            return None
