"""The chat history kept by the User Service, as the pipeline and delivery use it.

Three jobs, all idempotent across crashes because the User Service need not be (a service
without a unique key stores a replayed write twice):

- `log_or_queue` writes a history row now, or durably queues it (`RetryQueue`) when the service
  cannot take it;
- `recorded_inbound` tells the pipeline whether a message is recorded already, and by whom
  (its own earlier run, or someone else: a duplicate);
- `on_delivered`, delivery's hook, writes the outbound row once a reply is sent, looking first
  when an earlier run of the hook may have written it;
- `context` is the agent's view of the conversation (the last few rows, oldest first): since
  the newest `/new` (or `/reset`), without the messages of the turn being answered, and in a
  group the chat's recent speakers merged (each with who said it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal

from app.delivery import DeliveredJob
from app.errors import UserServiceError
from app.logger import get_logger
from app.processing.commands import NEW_CONTEXT_COMMANDS
from app.processing.ports import UserService
from app.storage.retry_queue import RetryQueue
from app.utils import build_display_name, message_of, parse_command

log = get_logger(__name__)


def _is_row_of(row: dict[str, Any], update_id: int) -> bool:
    """Whether a history row is the inbound record of `update_id` (its metadata is the update)."""
    metadata = row.get("metadata")
    return (
        row.get("direction") == "in"
        and isinstance(metadata, dict)
        and metadata.get("update_id") == update_id
    )


def _update_id_of(row: dict[str, Any]) -> Any:
    metadata = row.get("metadata")
    return metadata.get("update_id") if isinstance(metadata, dict) else None


def _starts_fresh(row: dict[str, Any]) -> bool:
    """An inbound `/new` or `/reset`: the agent's context starts after it."""
    if row.get("direction") != "in":
        return False
    metadata = row.get("metadata")
    gateway = metadata.get("gateway") if isinstance(metadata, dict) else None
    if isinstance(gateway, dict) and gateway.get("command") in NEW_CONTEXT_COMMANDS:
        return True
    text = row.get("message_text")
    return isinstance(text, str) and parse_command(text.strip())[0] in NEW_CONTEXT_COMMANDS


def _when(row: dict[str, Any]) -> float:
    """A sortable time for merging several users' rows (ISO text or epoch seconds)."""
    value = row.get("created_at")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value).timestamp()
    return 0.0


def _speaker(row: dict[str, Any]) -> str | None:
    metadata = row.get("metadata")
    sender = message_of(metadata).get("from") if isinstance(metadata, dict) else None
    if not sender:
        callback = metadata.get("callback_query") if isinstance(metadata, dict) else None
        sender = callback.get("from") if isinstance(callback, dict) else None
    return build_display_name(sender) if isinstance(sender, dict) else None


class History:
    """History reads and writes for one gateway (see the module docstring)."""

    def __init__(
        self, users: UserService, retry_queue: RetryQueue, *, context_size: int = 5
    ) -> None:
        self.users = users
        self.retry_queue = retry_queue
        self.context_size = context_size

    async def context(
        self,
        user_id: str,
        current_update_id: int | None = None,
        *,
        exclude: Collection[int] = (),
        fresh: bool = False,
        chat_id: int | None = None,
        speakers: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The last few interactions before this turn, oldest first, as agent context.

        The inbound rows of the turn being answered (`current_update_id` and `exclude`) are
        already written by now; they are left out (the agent gets them as `text` and `parts`),
        so an agent joining history and text does not see them twice. Rows before the newest
        `/new` are left out too, and `fresh` (the turn *is* a `/new`) gives no context at all.
        With `speakers` (a group chat: other users who spoke there recently) their rows in
        `chat_id` are merged in and every item says who wrote it (`from`).
        Best-effort: empty when the User Service cannot answer.
        """
        if self.context_size <= 0 or fresh:
            return []
        skip = {u for u in (current_update_id, *exclude) if u is not None}
        limit = min(200, self.context_size + len(skip) + 1)
        group = bool(speakers) or (chat_id is not None and chat_id < 0)
        try:
            if group:
                found = await asyncio.gather(
                    *(
                        self.users.get_interactions(uid, limit=limit, chat_id=chat_id)
                        for uid in dict.fromkeys([user_id, *speakers])
                    )
                )
                rows = sorted((r for rs in found for r in rs), key=_when, reverse=True)
            else:
                rows = await self.users.get_interactions(user_id, limit=limit)
        except UserServiceError as exc:
            log.info("history unavailable for agent context", extra={"status": exc.status})
            return []
        rows = [r for r in rows if r.get("direction") != "in" or _update_id_of(r) not in skip]
        for i, row in enumerate(rows):  # newest first: stop at the newest /new
            if _starts_fresh(row):
                rows = rows[:i]
                break
        items = []
        for r in reversed(rows[: self.context_size]):
            item = {
                "direction": r.get("direction"),
                "text": r.get("message_text"),
                "created_at": r.get("created_at"),
            }
            if group and r.get("direction") == "in":
                item["from"] = _speaker(r)
            items.append(item)
        return items

    async def log_or_queue(self, payload: dict[str, Any], dedupe_key: str) -> None:
        """Write a history row now, or durably queue it when the User Service cannot take it."""
        try:
            await self.users.log_interaction(**payload)
        except UserServiceError as exc:
            log.warning(
                "history write failed; queued for retry",
                extra={"status": exc.status, "direction": payload.get("direction")},
            )
            await self.retry_queue.enqueue(payload, dedupe_key=dedupe_key)

    async def recorded_inbound(
        self,
        user_id: str,
        update_id: int,
        message_id: int | None,
        chat_id: int,
        *,
        resumed: bool,
    ) -> Literal["own", "other"] | None:
        """Is this message already in the history, and by whose write?

        "own": the row an earlier run of this very update wrote (only possible when `resumed`:
        the write comes after the user step is saved), so the write is done and the update goes
        on to its answer. "other": the message was recorded by someone else (a gateway that lost
        its database, a replay under another update): a duplicate, not answered again. None:
        not recorded yet. Messages without an id (button presses, edits) can only be found by
        their update id, so they are looked for only on a resumed run.
        """
        if message_id is None and not resumed:
            return None
        rows = await self.users.find_interactions(
            user_id,
            telegram_message_id=message_id,
            chat_id=chat_id,
            direction="in",
            limit=50 if message_id is not None else 20,
        )
        if resumed and any(_is_row_of(r, update_id) for r in rows):
            return "own"
        if message_id is None or not rows:
            return None
        return "other"

    async def on_delivered(self, job: DeliveredJob) -> None:
        """Delivery finished a reply: write the outbound history row (once per job)."""
        history = dict(job.history or {})
        if not history:
            return
        message_ids = list(job.message_ids)
        metadata = dict(history.get("metadata") or {})
        metadata["message_ids"] = message_ids
        payload = {
            "user_id": history["user_id"],
            "message_text": history.get("message_text", ""),
            "direction": "out",
            "telegram_message_id": message_ids[-1] if message_ids else None,
            "metadata": metadata,
            "chat_id": history.get("chat_id"),
        }
        if job.maybe_done and message_ids:
            # An earlier run of this hook died or failed after its write, perhaps: look first.
            rows = await self.users.find_interactions(
                str(history["user_id"]),
                telegram_message_id=message_ids[-1],
                chat_id=history.get("chat_id"),
                direction="out",
            )
            if rows:
                log.info("outbound history row already written", extra={"job_key": job.job_key})
                return
        await self.log_or_queue(payload, dedupe_key=f"out:{job.job_key}")
