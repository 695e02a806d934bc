"""What happens to one update, step by step, each step remembered.

The steps follow the original specification: answer a pressed button, resolve (or register)
the user, dedupe against the history, log the inbound interaction, show "typing" while the
agent works, ask the agent, and hand the reply to the delivery engine, which sends it (rate
limited, split, retried) and then logs the outbound interaction (`on_delivered`).

After each step its result goes into the update's step record (`app.processing.progress`), so
an update interrupted by a crash resumes at the first step not yet done: no second agent call,
no second history row, no second reply. Failures are raised to the dispatcher, which asks
`app.errors.classify` what they mean.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.agent_client import AgentClient
from app.errors import UserServiceError
from app.logger import get_logger
from app.metrics import Metrics
from app.processing.history import History
from app.processing.keyboards import CallbackStore, build_inline_keyboard, resolve_callback_data
from app.processing.ports import DeliveryPort, UserService
from app.processing.progress import InboxRecord, ReplyRecord, StepRecord
from app.processing.streaming import Streamer
from app.storage.inbox import DONE, IGNORED, Inbox, InboxItem
from app.storage.states import InboxState
from app.utils import ParsedUpdate, is_stop, parse_update, trim_metadata

log = get_logger(__name__)

#: The answer to `/stop` when no answer was being written.
NOTHING_TO_STOP = "Nothing to stop: no answer is being written right now."


#: Answers a pressed button's callback query once (the early acker's `answer_once`).
AnswerCallback = Callable[[int, str], Awaitable[None]]


@dataclass
class Outcome:
    """How an update ended, and which steps this run actually did (for the canonical log)."""

    state: InboxState
    note: str | None = None
    steps: list[str] = field(default_factory=list)


class Pipeline:
    """Processes claimed inbox items. Holds no per-update state of its own."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        users: UserService,
        agent: AgentClient,
        history: History,
        delivery: DeliveryPort,
        callbacks: CallbackStore,
        metrics: Metrics,
        answer_callback: AnswerCallback,
        streamer: Streamer,
    ) -> None:
        self.inbox = inbox
        self.users = users
        self.agent = agent
        self.history = history
        self.delivery = delivery
        self.callbacks = callbacks
        self.metrics = metrics
        self.answer_callback = answer_callback
        self.streamer = streamer

    async def process(self, item: InboxItem) -> Outcome:
        parsed = parse_update(item.update())
        record = InboxRecord(self.inbox, item)
        progress = record.progress
        chat_id = parsed["chat_id"]
        if parsed["kind"] == "unsupported" or chat_id is None or parsed["telegram_id"] is None:
            return Outcome(IGNORED, "not a message the gateway answers")
        kind = parsed["kind"]
        steps: list[str] = []
        if kind == "stopped_message_generation":  # a button, not a message: no history row
            return await self.stop(record, chat_id, steps)

        if kind == "callback_query" and not progress.get("cb_answered"):
            query_id = parsed["callback_query_id"]
            if query_id:
                await self.answer_callback(item.update_id, query_id)
            progress["cb_answered"] = True

        # An earlier run got past the user step: it may have written the inbound row before it
        # died (or before its write timed out), so that row must be looked for, not rewritten.
        resumed = "user" in progress
        user = progress.get("user")
        if user is None:
            user = await self.resolve_user(parsed)
            progress["user"] = user
            await record.save()
            steps.append("user")
        user_id = str(user["id"])
        await self.delivery.mark_active(chat_id)

        text = parsed["text"]
        if kind == "callback_query":
            text = await resolve_callback_data(parsed["callback_data"] or "", self.callbacks)
        message_id = parsed["message_id"] if kind == "message" else None

        if not progress.get("in_logged"):
            found = await self.history.recorded_inbound(
                user_id, item.update_id, message_id, chat_id, resumed=resumed
            )
            steps.append("dedupe")
            if found == "other":
                # The second dedupe layer: covers a gateway that lost its own database.
                return Outcome(DONE, "duplicate: already in the history", steps)
            if found is None:
                await self.history.log_or_queue(
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
                steps.append("log_in")
            progress["in_logged"] = True
            await record.save()

        if kind == "edited_message":
            return Outcome(DONE, "edit recorded; edits are not answered", steps)
        if is_stop(parsed):
            return await self.stop(record, chat_id, steps)

        steps += await self.answer(
            record,
            user=user,
            chat_id=chat_id,
            text=text,
            message_id=parsed["message_id"],
            extra={"command": parsed["command"], "kind": kind},
        )
        return Outcome(DONE, None, steps)

    async def stop(self, record: InboxRecord, chat_id: int, steps: list[str]) -> Outcome:
        """A stop reaches its turn in the chat's order after the answer it stopped (which kept
        what was shown). Used: nothing more to say. Unused: say so, politely (`/stop` only;
        Telegram's stop button exists only while a draft is being written)."""
        assert record.update_id is not None
        if await self.inbox.stopped_by(record.chat_key, record.update_id):
            return Outcome(DONE, "stop: the answer being written was stopped", steps)
        if record.item.kind == "stopped_message_generation":
            return Outcome(DONE, "stop: nothing was being written", steps)
        if not record.progress.get("enqueued"):
            await self.delivery.enqueue(record.job_key, chat_id, NOTHING_TO_STOP)
            record.progress["enqueued"] = True
            await record.save()
            steps.append("enqueue")
        return Outcome(DONE, "stop: nothing was being written", steps)

    async def answer(
        self,
        record: StepRecord,
        *,
        user: dict[str, Any],
        chat_id: int,
        text: str,
        message_id: int | None,
        extra: dict[str, Any],
    ) -> list[str]:
        """Ask the agent (showing "typing") and hand the reply to delivery; both remembered.

        Returns the steps it ran (a resumed update may have done both already).
        """
        steps: list[str] = []
        progress = record.progress
        user_id = str(user["id"])
        reply = progress.get("reply")
        if reply is None:
            context = await self.history.context(user_id, record.update_id)
            got = await self.streamer.answer(
                record,
                user=user,
                text=text,
                chat_id=chat_id,
                message_id=message_id,
                history=context,
                **extra,
            )
            answer = got.reply
            self.metrics.agent_calls.labels(answer.source).inc()
            reply = ReplyRecord(text=answer.text, actions=answer.actions, source=answer.source)
            if got.stopped:
                reply["stopped"] = True
                if got.stopped_by is not None:
                    reply["stopped_by"] = got.stopped_by
            progress["reply"] = reply
            await record.save()
            steps.append("agent")

        if not progress.get("enqueued"):
            markup = await build_inline_keyboard(list(reply["actions"]), self.callbacks)
            preview = progress.get("stream", {}).get("message_id")
            await self.delivery.enqueue(
                record.job_key,
                chat_id,
                reply["text"],
                reply_markup=markup,
                edit_message_id=preview,
                history={
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "message_text": reply["text"],
                    "metadata": {
                        "in_reply_to": message_id,
                        "update_id": record.update_id,
                        "actions": reply["actions"],
                        "agent_source": reply["source"],
                        **({"stopped": True} if reply.get("stopped") else {}),
                    },
                },
            )
            progress["enqueued"] = True
            await record.save()
            steps.append("enqueue")
        return steps

    async def resolve_user(self, parsed: ParsedUpdate) -> dict[str, Any]:
        telegram_id = parsed["telegram_id"]
        assert telegram_id is not None
        user = await self.users.get_user_by_telegram(telegram_id)
        if user is None:
            profile = parsed["from"] or parsed["chat"] or {}
            user = await self.users.register_user_from_telegram(telegram_id, profile)
            log.info("registered a new user", extra={"telegram_id": telegram_id})
        if not isinstance(user, dict) or "id" not in user:
            raise UserServiceError("the User Service returned a user without an id", malformed=True)
        return user

    @staticmethod
    def metadata(parsed: ParsedUpdate) -> dict[str, Any]:
        """The raw update (trimmed), plus what the gateway understood of it."""
        trimmed = trim_metadata(parsed["raw"])
        meta: dict[str, Any] = dict(trimmed) if isinstance(trimmed, dict) else {}
        meta["gateway"] = {
            "kind": parsed.get("kind"),
            "media": parsed.get("media"),
            "command": parsed.get("command"),
        }
        return meta
