"""What happens to one update, step by step, each step remembered.

The steps follow the original specification: answer a pressed button, resolve (or register)
the user, dedupe against the history, log the inbound interaction, show "typing" while the
agent works, ask the agent, and hand the reply to the delivery engine, which sends it (rate
limited, split, retried) and then logs the outbound interaction.

After each step the result goes into the update's `progress` in the inbox, so an update
interrupted by a crash resumes at the first step not yet done: no second agent call, no
second history row, no second reply. Errors are sorted into two kinds for the dispatcher:
`Unavailable` (a dependency is down or overloaded: wait and retry, never a reason to give the
update up) and everything else (counted towards `MAX_ATTEMPTS`, after which the update is dead).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.agent_client import AgentClient
from app.inbox import DONE, IGNORED, Inbox, InboxItem
from app.keyboards import CallbackStore, build_inline_keyboard, resolve_callback_data
from app.logger import get_logger
from app.metrics import Metrics
from app.storage_retry import RetryQueue
from app.telegram_client import TelegramClient, TelegramClientError
from app.user_client import UserServiceClient, UserServiceError
from app.utils import parse_update, trim_metadata

log = get_logger(__name__)

#: HTTP statuses that mean "the service is down or overloaded", not "this update is bad".
OUTAGE_STATUSES = frozenset({None, 408, 429, 502, 503, 504})


class Unavailable(Exception):
    """A dependency is temporarily unreachable: retry later without counting an attempt."""


class DeliveryPort(Protocol):
    """What the pipeline needs from the delivery engine (`app.delivery.Delivery`)."""

    async def enqueue(
        self,
        job_key: str,
        chat_id: int,
        text: str,
        *,
        parse_mode: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        reply_to_message_id: int | None = None,
        history: dict[str, Any] | None = None,
    ) -> None: ...

    def typing(self, chat_id: int) -> Any: ...

    async def mark_active(self, chat_id: int) -> None: ...


@dataclass
class Outcome:
    state: str
    note: str | None = None


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, Unavailable):
        return True
    if isinstance(exc, UserServiceError):
        return exc.status in OUTAGE_STATUSES
    if isinstance(exc, TelegramClientError):
        return exc.status in OUTAGE_STATUSES
    return False


def _is_row_of(row: dict[str, Any], update_id: int) -> bool:
    """Whether a history row is the inbound record of `update_id` (its metadata is the update)."""
    metadata = row.get("metadata")
    return (
        row.get("direction") == "in"
        and isinstance(metadata, dict)
        and metadata.get("update_id") == update_id
    )


class Pipeline:
    """Processes claimed inbox items. Holds no per-update state of its own."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        users: UserServiceClient,
        agent: AgentClient,
        telegram: TelegramClient,
        delivery: DeliveryPort,
        callbacks: CallbackStore,
        retry_queue: RetryQueue,
        metrics: Metrics,
        history_size: int = 5,
        already_answered: Callable[[str], bool] | None = None,
    ) -> None:
        self.inbox = inbox
        self.users = users
        self.agent = agent
        self.telegram = telegram
        self.delivery = delivery
        self.callbacks = callbacks
        self.retry_queue = retry_queue
        self.metrics = metrics
        self.history_size = history_size
        self.already_answered = already_answered or (lambda _id: False)

    async def process(self, item: InboxItem) -> Outcome:
        parsed = parse_update(item.update())
        progress = item.progress
        chat_id = parsed.get("chat_id")
        if (
            parsed.get("kind") == "unsupported"
            or chat_id is None
            or parsed.get("telegram_id") is None
        ):
            return Outcome(IGNORED, "not a message the gateway answers")
        kind = parsed["kind"]

        if kind == "callback_query" and not progress.get("cb_answered"):
            await self.answer_callback(parsed.get("callback_query_id"))
            progress["cb_answered"] = True

        # An earlier run got past the user step: it may have written the inbound row before it
        # died (or before its write timed out), so that row must be looked for, not rewritten.
        resumed = "user" in progress
        user = progress.get("user")
        if user is None:
            user = await self.resolve_user(parsed)
            progress["user"] = user
            await self.inbox.save_progress(item.seq, progress)
        user_id = str(user["id"])
        await self.delivery.mark_active(chat_id)

        text = str(parsed.get("text") or "")
        if kind == "callback_query":
            text = await resolve_callback_data(
                str(parsed.get("callback_data") or ""), self.callbacks
            )
        message_id = parsed.get("message_id") if kind == "message" else None

        if not progress.get("in_logged"):
            found = await self.recorded_inbound(
                user_id, item.update_id, message_id, chat_id, resumed=resumed
            )
            if found == "other":
                # The second dedupe layer: covers a gateway that lost its own database.
                return Outcome(DONE, "duplicate: already in the history")
            if found is None:
                await self.log_or_queue(
                    {
                        "user_id": user_id,
                        "message_text": text,
                        "direction": "in",
                        "telegram_message_id": message_id,
                        "metadata": self.metadata(parsed),
                        "chat_id": chat_id,
                    },
                    dedupe_key=f"in:{item.update_id}",
                )
            progress["in_logged"] = True
            await self.inbox.save_progress(item.seq, progress)

        if kind == "edited_message":
            return Outcome(DONE, "edit recorded; edits are not answered")

        await self.answer(
            item=item,
            progress=progress,
            user=user,
            chat_id=chat_id,
            text=text,
            message_id=parsed.get("message_id"),
            extra={"command": parsed.get("command"), "kind": kind},
        )
        return Outcome(DONE)

    async def answer(
        self,
        *,
        item: InboxItem | None,
        progress: dict[str, Any],
        user: dict[str, Any],
        chat_id: int,
        text: str,
        message_id: int | None,
        extra: dict[str, Any],
        job_key: str | None = None,
    ) -> None:
        """Ask the agent (showing "typing") and hand the reply to delivery; both remembered."""
        user_id = str(user["id"])
        reply = progress.get("reply")
        if reply is None:
            async with self.delivery.typing(chat_id):
                history = await self.history(user_id, item.update_id if item else None)
                answer = await self.agent.respond(
                    user, text, chat_id=chat_id, message_id=message_id, history=history, **extra
                )
            self.metrics.agent_calls.labels(answer.source).inc()
            reply = {"text": answer.text, "actions": answer.actions, "source": answer.source}
            progress["reply"] = reply
            if item is not None:
                await self.inbox.save_progress(item.seq, progress)

        if not progress.get("enqueued"):
            markup = await build_inline_keyboard(list(reply.get("actions") or []), self.callbacks)
            key = job_key or f"reply:{item.update_id if item else message_id}"
            await self.delivery.enqueue(
                key,
                chat_id,
                str(reply["text"]),
                reply_markup=markup,
                history={
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "message_text": str(reply["text"]),
                    "metadata": {
                        "in_reply_to": message_id,
                        "update_id": item.update_id if item else None,
                        "actions": reply.get("actions") or [],
                        "agent_source": reply.get("source"),
                    },
                },
            )
            progress["enqueued"] = True
            if item is not None:
                await self.inbox.save_progress(item.seq, progress)

    async def resolve_user(self, parsed: dict[str, Any]) -> dict[str, Any]:
        telegram_id = int(parsed["telegram_id"])
        user = await self.users.get_user_by_telegram(telegram_id)
        if user is None:
            profile = parsed.get("from") or parsed.get("chat") or {}
            user = await self.users.register_user_from_telegram(telegram_id, profile)
            log.info("registered a new user", extra={"telegram_id": telegram_id})
        if not isinstance(user, dict) or "id" not in user:
            raise UserServiceError("the User Service returned a user without an id")
        return user

    async def answer_callback(self, callback_query_id: Any) -> None:
        """Stop the button's spinner. Best-effort: a stale query must not block the reply."""
        if not callback_query_id or self.already_answered(str(callback_query_id)):
            return
        try:
            await self.telegram.answer_callback_query(str(callback_query_id))
        except TelegramClientError as exc:
            log.info(
                "answerCallbackQuery failed (ignored)",
                extra={"status": exc.status, "description": exc.description},
            )

    async def history(
        self, user_id: str, current_update_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The last few interactions before this one, oldest first, as agent context.

        The inbound row of the update being answered is already written by now; it is left out
        (the agent gets it as `text`), so an agent joining history and text does not see it twice.
        Best-effort: empty when the User Service cannot answer.
        """
        if self.history_size <= 0:
            return []
        try:
            rows = await self.users.get_interactions(user_id, limit=self.history_size + 1)
        except UserServiceError as exc:
            log.info("history unavailable for agent context", extra={"status": exc.status})
            return []
        if current_update_id is not None:
            rows = [r for r in rows if not _is_row_of(r, current_update_id)]
        rows = list(reversed(rows[: self.history_size]))
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

    @staticmethod
    def metadata(parsed: dict[str, Any]) -> dict[str, Any]:
        """The raw update (trimmed), plus what the gateway understood of it."""
        trimmed = trim_metadata(parsed["raw"])
        meta: dict[str, Any] = dict(trimmed) if isinstance(trimmed, dict) else {}
        meta["gateway"] = {
            "kind": parsed.get("kind"),
            "media": parsed.get("media"),
            "command": parsed.get("command"),
        }
        return meta

    async def on_delivered(self, job: Any) -> None:
        """Delivery finished a reply: write the outbound history row (once per job)."""
        history = dict(getattr(job, "history", None) or {})
        if not history:
            return
        message_ids = list(getattr(job, "message_ids", []) or [])
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
        if getattr(job, "maybe_done", False) and message_ids:
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
