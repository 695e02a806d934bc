"""Long polling: the other way in, for a bot without a public HTTPS URL.

With `UPDATE_MODE=polling` the gateway asks Telegram for updates (`getUpdates`) instead of
waiting for webhook calls, and writes them to the same durable inbox; everything after the inbox
is identical. An update is confirmed to Telegram (by asking for `offset = last id + 1`) only after
its batch is committed, so a crash between the two makes Telegram send it again, and the inbox's
dedupe absorbs the repeat.

Telegram refuses `getUpdates` while a webhook is set (409), so the poller deletes the webhook at
start, as python-telegram-bot's `run_polling` does; pending updates are kept.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from app.errors import Verdict, classify, retry_after
from app.inbound.ingest import classify_update
from app.logger import get_logger
from app.storage.inbox import Inbox, NewUpdate
from app.telegram_client import TelegramClient
from app.utils import HANDLED_KINDS

log = get_logger(__name__)


class Poller:
    def __init__(
        self,
        telegram: TelegramClient,
        inbox: Inbox,
        *,
        on_commit: Callable[[list[NewUpdate]], None] | None = None,
        poll_timeout: int = 25,
        max_backoff: float = 30.0,
    ) -> None:
        self.telegram = telegram
        self.inbox = inbox
        self.on_commit = on_commit
        self.poll_timeout = poll_timeout
        self.max_backoff = max_backoff
        self.offset: int | None = None

    async def run(self) -> None:
        """Poll until cancelled; errors are logged and retried with back-off."""
        backoff = 1.0
        webhook_deleted = False
        while True:
            try:
                if not webhook_deleted:
                    await self.telegram.delete_webhook(drop_pending_updates=False)
                    webhook_deleted = True
                    log.info("polling for updates (webhook deleted)")
                await self.poll_once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                verdict = classify(exc)
                if verdict is Verdict.CONFLICT:
                    webhook_deleted = False  # someone set a webhook again (or another poller)
                wait = (retry_after(exc) if verdict is Verdict.RATE_LIMITED else None) or backoff
                log.warning(
                    "getUpdates failed; retrying",
                    extra={"error": str(exc), "verdict": verdict.value, "retry_in": wait},
                )
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, self.max_backoff)

    async def poll_once(self) -> int:
        """One long poll: store what arrived, then move the offset past it. Returns the count."""
        envelope = await self.telegram.get_updates(
            offset=self.offset, timeout=self.poll_timeout, allowed_updates=list(HANDLED_KINDS)
        )
        updates: list[Any] = envelope.get("result") or []
        rows: list[NewUpdate] = []
        last_id: int | None = None
        for update in updates:
            row = classify_update(update)
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if isinstance(update_id, int):
                last_id = update_id if last_id is None else max(last_id, update_id)
            if row is not None:
                payload = json.dumps(update, ensure_ascii=False, separators=(",", ":"))
                rows.append(NewUpdate(row.update_id, row.chat_key, row.kind, payload))
        if rows:
            await self.inbox.add_many(rows)
            if self.on_commit is not None:
                self.on_commit(rows)
        if last_id is not None:
            self.offset = last_id + 1
        return len(rows)
