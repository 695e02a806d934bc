"""What happens to one update, step by step, each step remembered.

The steps follow the original specification: answer a pressed button, resolve (or register)
the user, dedupe against the history, log the inbound interaction, show "typing" while the
agent works, ask the agent, and hand the reply to the delivery engine, which sends it (rate
limited, split, retried) and then logs the outbound interaction (`on_delivered`).

Around them: a group message not addressed to the bot is recorded and not answered
(`addressing`); a pressed button's keyboard shows the choice (`feedback`); and the update may
head a turn that answers the messages queued behind it too (`turns`), which is then recorded
message by message and answered once.

After each step its result goes into the update's step record (`app.processing.progress`), so
an update interrupted by a crash resumes at the first step not yet done: no second agent call,
no second history row, no second reply. Failures are raised to the dispatcher, which asks
`app.errors.classify` what they mean.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.agent_client import AgentClient
from app.errors import UserServiceError
from app.logger import get_logger
from app.metrics import Metrics
from app.processing.addressing import GroupAddressing, Reason, is_group
from app.processing.cancel import Cancelled
from app.processing.commands import NEW_CONTEXT_COMMANDS
from app.processing.feedback import SPENT_DATA, ButtonFeedback, pressed_label
from app.processing.files import FileLinks
from app.processing.history import History
from app.processing.keyboards import CallbackStore, build_inline_keyboard, resolve_callback_data
from app.processing.ports import DeliveryPort, UserService
from app.processing.progress import InboxRecord, ReplyRecord, StepRecord
from app.processing.streaming import Streamer
from app.processing.turns import INTERRUPT, Turn, Turns, Wait
from app.storage.inbox import DONE, IGNORED, PENDING, Inbox, InboxItem
from app.storage.states import InboxState
from app.utils import (
    EDIT_KINDS,
    ParsedUpdate,
    is_stop,
    message_key,
    parse_update,
    trim_metadata,
)

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
    #: Not finished: give the update back, to be claimed again at this time (epoch seconds).
    defer_until: float | None = None


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
        turns: Turns | None = None,
        groups: GroupAddressing | None = None,
        feedback: ButtonFeedback | None = None,
    ) -> None:
        """Without `turns`, every message is its own turn (no waiting); without `groups`, group
        messages are all answered; without `feedback`, pressed keyboards stay as they are."""
        self.inbox = inbox
        self.users = users
        self.agent = agent
        self.history = history
        self.delivery = delivery
        self.callbacks = callbacks
        self.metrics = metrics
        self.answer_callback = answer_callback
        self.streamer = streamer
        # Without a configured `turns`, file links are signed with a throw-away key.
        links = FileLinks(bot_token=secrets.token_urlsafe(32))
        self.turns = turns or Turns(inbox, history, files=links)
        self.groups = groups
        self.feedback = feedback

    async def process(self, item: InboxItem) -> Outcome:
        parsed = parse_update(item.update())
        record = InboxRecord(self.inbox, item)
        progress = record.progress
        chat_id = parsed["chat_id"]
        if parsed["kind"] == "unsupported" or chat_id is None or parsed["telegram_id"] is None:
            return Outcome(IGNORED, parsed["unsupported_reason"] or "not a message it answers")
        kind = parsed["kind"]
        steps: list[str] = []
        if kind == "stopped_message_generation":  # a button, not a message: no history row
            return await self.stop(record, chat_id, steps)

        if kind == "callback_query" and not progress.get("cb_answered"):
            query_id = parsed["callback_query_id"]
            if query_id:
                await self.answer_callback(item.update_id, query_id)
            progress["cb_answered"] = True
        if kind == "callback_query" and parsed["callback_data"] == SPENT_DATA:
            return Outcome(IGNORED, "a press on a spent button (its choice is made)")

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
        message_id = message_key(parsed)
        reason = await self.addressed(parsed)
        if reason is None and parsed["media_group_id"] and kind not in EDIT_KINDS:
            # An album addresses the bot when any of its items does (the caption is on one).
            siblings = await self.turns.album_wait(item, parsed)
            if isinstance(siblings, Wait):
                return Outcome(PENDING, "waiting for the rest of the album", steps, siblings.until)
            for sibling in siblings:
                if await self.addressed(sibling.parsed) is not None:
                    reason = "album"
                    break

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
                        "metadata": self.metadata(parsed, addressed=reason),
                        "chat_id": chat_id,
                    },
                    dedupe_key=f"in:{item.update_id}",
                )
                steps.append("log_in")
            progress["in_logged"] = True
            await record.save()

        if kind in EDIT_KINDS:
            return Outcome(DONE, "edit recorded; edits are not answered", steps)
        if reason is None:
            return Outcome(DONE, "group message not addressed to the bot: recorded", steps)
        if is_stop(parsed):
            return await self.stop(record, chat_id, steps)
        if kind == "callback_query" and not progress.get("feedback"):
            if self.feedback is not None and await self.feedback.apply(parsed):
                steps.append("feedback")
            progress["feedback"] = True
            await record.save()

        outcome = await self.answer_turn(record, item, parsed, user, text)
        outcome.steps[:0] = steps
        return outcome

    async def addressed(self, parsed: ParsedUpdate) -> Reason | None:
        """Why the bot answers this update (None: a group message not meant for it)."""
        if self.groups is None:
            return "all" if is_group(parsed) else "private"
        return await self.groups.reason(parsed)

    def agent_text(self, parsed: ParsedUpdate, text: str | None = None) -> str:
        """What the agent sees of one message: its text, in groups without the @mention."""
        text = parsed["text"] if text is None else text
        if self.groups is None or parsed["kind"] == "callback_query":
            return text
        return self.groups.agent_text(parsed, text)

    async def answer_turn(
        self,
        record: StepRecord,
        item: InboxItem,
        parsed: ParsedUpdate,
        user: dict[str, Any],
        text: str,
    ) -> Outcome:
        """Assemble the turn `item` heads, record its other messages, answer it once."""
        steps: list[str] = []
        user_id = str(user["id"])
        chat_id = parsed["chat_id"]
        assert chat_id is not None
        while True:
            turn = await self.turns.plan(
                record,
                item,
                parsed,
                head_text=self.agent_text(parsed, text),
                text_of=self.agent_text,
            )
            if isinstance(turn, Wait):
                return Outcome(PENDING, "waiting for more messages of the turn", steps, turn.until)
            steps += await self.turns.record_members(
                record, turn, user_id=user_id, chat_id=chat_id, metadata=self.metadata
            )
            merged, first_id, fields = self.turns.request(turn)
            extra = await self.turn_extra(record, item, parsed, turn, fields)
            try:
                with self.turns.asking(turn):
                    steps += await self.answer(
                        record,
                        user=user,
                        chat_id=chat_id,
                        text=merged,
                        message_id=first_id,
                        extra=extra,
                    )
            except Cancelled as exc:
                if exc.reason != INTERRUPT:
                    raise
                steps.append("interrupted")
                if "reply" not in record.progress:
                    self.turns.note_interrupt(record)
                    await record.save()
                continue  # take the new message(s) in (or finish a reply already saved)
            break
        await self.turns.finish(record, item)
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

    async def turn_extra(
        self,
        record: StepRecord,
        item: InboxItem,
        parsed: ParsedUpdate,
        turn: Turn,
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        """The agent request's other fields (`fields`: the turn's `parts`, `attachments`), and
        `context` and `delivery`, the options `answer` takes out for itself."""
        extra: dict[str, Any] = {"command": parsed["command"], "kind": parsed["kind"], **fields}
        chat = parsed["chat"] or {}
        group = is_group(parsed)
        if group:
            extra["chat"] = {
                "id": parsed["chat_id"],
                "type": chat.get("type"),
                "title": chat.get("title"),
            }
        connection = parsed["business_connection_id"]
        if connection:
            extra["business_connection_id"] = connection
        if parsed["kind"] == "callback_query":
            raw = parsed["raw"] if isinstance(parsed["raw"], dict) else {}
            query = raw.get("callback_query") or {}
            markup = (query.get("message") or {}).get("reply_markup")
            extra["button"] = {
                "data": turn.head.text,
                "text": pressed_label(markup, parsed["callback_data"] or ""),
                "message_id": parsed["callback_message_id"],
            }
        context: dict[str, Any] = {
            "exclude": turn.update_ids,
            "fresh": parsed["command"] in NEW_CONTEXT_COMMANDS,
        }
        if group:
            context["chat_id"] = parsed["chat_id"]
            context["speakers"] = await self.recent_speakers(
                item, str((record.progress.get("user") or {}).get("id"))
            )
        extra["context"] = context
        delivery: dict[str, Any] = {}
        if connection:
            delivery["business_connection_id"] = connection
        elif group and message_key(parsed):
            delivery["reply_to_message_id"] = parsed["message_id"]
        extra["delivery"] = delivery
        return extra

    async def recent_speakers(self, item: InboxItem, user_id: str, most: int = 5) -> list[str]:
        """User ids of the others who spoke in this chat lately (group context)."""
        found: list[str] = []
        for progress in await self.inbox.recent_progress(item.chat_key, 50):
            user = progress.get("user")
            uid = str(user.get("id")) if isinstance(user, dict) and "id" in user else None
            if uid and uid != user_id and uid not in found:
                found.append(uid)
                if len(found) >= most:
                    break
        return found

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
        extra = dict(extra)
        # Not for the agent: how to read the context, and how to send the reply.
        context_options: dict[str, Any] = extra.pop("context", None) or {}
        delivery_options: dict[str, Any] = extra.pop("delivery", None) or {}
        reply = progress.get("reply")
        if reply is None:
            business = delivery_options.get("business_connection_id")
            context = await self.history.context(user_id, record.update_id, **context_options)
            got = await self.streamer.answer(
                record,
                user=user,
                text=text,
                chat_id=chat_id,
                business=business,
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
                **delivery_options,
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
    def metadata(parsed: ParsedUpdate, addressed: str | None = None) -> dict[str, Any]:
        """The raw update (trimmed), plus what the gateway understood of it."""
        trimmed = trim_metadata(parsed["raw"])
        meta: dict[str, Any] = dict(trimmed) if isinstance(trimmed, dict) else {}
        meta["gateway"] = {
            "kind": parsed.get("kind"),
            "media": parsed.get("media"),
            "command": parsed.get("command"),
        }
        if is_group(parsed):
            meta["gateway"]["addressed"] = addressed
        return meta
