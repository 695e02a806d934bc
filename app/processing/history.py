"""The chat history kept by the User Service, as the pipeline and delivery use it.

Three jobs, all idempotent across crashes because the User Service need not be (a service
without a unique key stores a replayed write twice):

- `log_or_queue` writes a history row now, or durably queues it (`RetryQueue`) when the service
  cannot take it;
- `recorded_inbound` tells the pipeline whether a message is recorded already, and by whom
  (its own earlier run, or someone else: a duplicate);
- `on_delivered`, delivery's hook, writes the outbound row once a reply is sent, looking first
  when an earlier run of the hook may have written it;
- `context` is the agent's view of the conversation (the last few rows, oldest first).
"""

from __future__ import annotations

from typing import Any, Literal

from app.delivery import DeliveredJob
from app.errors import UserServiceError
from app.logger import get_logger
from app.processing.ports import UserService
from app.storage.retry_queue import RetryQueue

log = get_logger(__name__)


def _is_row_of(row: dict[str, Any], update_id: int) -> bool:
    """Whether a history row is the inbound record of `update_id` (its metadata is the update)."""
    metadata = row.get("metadata")
    return (
        row.get("direction") == "in"
        and isinstance(metadata, dict)
        and metadata.get("update_id") == update_id
    )


class History:
    """History reads and writes for one gateway (see the module docstring)."""

    def __init__(
        self, users: UserService, retry_queue: RetryQueue, *, context_size: int = 5
    ) -> None:
        self.users = users
        self.retry_queue = retry_queue
        self.context_size = context_size

    async def context(
        self, user_id: str, current_update_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The last few interactions before this one, oldest first, as agent context.

        The inbound row of the update being answered is already written by now; it is left out
        (the agent gets it as `text`), so an agent joining history and text does not see it twice.
        Best-effort: empty when the User Service cannot answer.
        """
        if self.context_size <= 0:
            return []
        try:
            rows = await self.users.get_interactions(user_id, limit=self.context_size + 1)
        except UserServiceError as exc:
            log.info("history unavailable for agent context", extra={"status": exc.status})
            return []
        if current_update_id is not None:
            rows = [r for r in rows if not _is_row_of(r, current_update_id)]
        rows = list(reversed(rows[: self.context_size]))
        return [
            {
                "direction": r.get("direction"),
                "text": r.get("message_text"),
                "created_at": r.get("created_at"),
            }
            for r in rows
        ]

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
