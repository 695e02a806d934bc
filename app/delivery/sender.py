"""One Telegram send and the record of its outcome: the sender role of the delivery engine.

The scheduler decides *when* a part may go; the sender makes the call and commits what
happened, then tells the scheduler what to do next (`SendOutcome`). What a failure means is
`app.errors.classify`'s verdict:

| verdict | action |
|---|---|
| (success) | record `sent` at once, ahead of every other writer; a finished job runs its hook |
| RATE_LIMITED | wait `retry_after` (the scheduler pauses the chat, or the bot); no attempt used |
| MIGRATED | send to the supergroup the group became |
| BAD_MARKUP | resend once as plain text |
| OUTAGE, FAILURE | retry with back-off and jitter; after `send_max_*`, park the job |
| CHAT_GONE | mark the chat unreachable; its pending jobs fail until the user writes again |
| PERMANENT (another 4xx) | park the job: this message cannot be sent as it is |

The window in which a crash re-sends a message (Telegram has it, our record does not) is from
Telegram's answer to the commit of its record; nothing else runs in between, and the record
takes the shortest path the database offers (`recorder.Recorder`). `delivery_record_seconds`
measures it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.backoff import backoff_delay
from app.delivery import store
from app.delivery.config import DeliveryConfig
from app.delivery.metrics import DeliveryMetrics
from app.delivery.ports import TelegramAPI
from app.delivery.recorder import Recorder
from app.delivery.states import JobState
from app.delivery.store import PartRow
from app.errors import TelegramClientError, Verdict, classify, retry_after
from app.logger import get_logger

if TYPE_CHECKING:
    from app.delivery.lane import SendLane

log = get_logger(__name__)


Transaction = Callable[..., AbstractAsyncContextManager[AsyncConnection]]


@dataclass(frozen=True)
class SendOutcome:
    """What the scheduler does after a send.

    `head`: the part to try next (the same one, or a copy with new bookkeeping); None: move on
    to the chat's next pending part. `flood`: seconds Telegram asked us to wait. `send_to`: the
    chat id to use from now on (a migrated group). `completed` / `completed_job`: the job whose
    last part was just recorded. `changed`: jobs that ended otherwise (parked, failed).
    `unreachable`: the chat can no longer be written to.
    """

    head: PartRow | None
    flood: float | None = None
    send_to: int | None = None
    completed: str | None = None
    completed_job: int | None = None
    changed: tuple[str, ...] = ()
    unreachable: bool = False


def method_for(part: PartRow) -> str:
    """A new message, or the final text of a streamed reply written over its preview."""
    return "sendMessage" if part.edit_message_id is None else "editMessageText"


def params_for(part: PartRow, send_to: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"chat_id": send_to or part.chat_id, "text": part.text}
    if part.edit_message_id is not None:
        params["message_id"] = part.edit_message_id
    if part.parse_mode and not part.plain_fallback:
        params["parse_mode"] = part.parse_mode
    if part.reply_markup is not None:
        params["reply_markup"] = part.reply_markup
    if part.reply_to_message_id is not None and part.edit_message_id is None:
        params["reply_parameters"] = {
            "message_id": part.reply_to_message_id,
            "allow_sending_without_reply": True,
        }
    if part.business_connection_id:
        params["business_connection_id"] = part.business_connection_id
    return params


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TelegramClientError):
        desc = exc.description or exc.__class__.__name__
        return f"{exc.code}: {desc}" if exc.code is not None else desc
    return exc.__class__.__name__


def _retry_reason(exc: BaseException) -> str:
    """The `delivery_retried` label: timeout, network, server_error, or unexpected (a bug)."""
    if not isinstance(exc, TelegramClientError):
        return "unexpected"
    if exc.code is not None:
        return "server_error"
    return "timeout" if exc.description.startswith("timeout") else "network"


class Sender:
    """Sends one part and commits the outcome (see the module docstring)."""

    def __init__(
        self,
        telegram: TelegramAPI,
        config: DeliveryConfig,
        metrics: DeliveryMetrics,
        transaction: Transaction,
        recorder: Recorder,
        *,
        hooks_wanted: bool,
        lane: SendLane | None = None,
    ) -> None:
        self.telegram = telegram
        self.config = config
        self.metrics = metrics
        self._tx = transaction
        self.recorder = recorder
        self.hooks_wanted = hooks_wanted
        self.lane = lane

    async def send(self, part: PartRow, send_to: int | None) -> SendOutcome:
        started = time.time()
        params = params_for(part, send_to)
        method = method_for(part)
        final = JobState.SENT if self.hooks_wanted else JobState.RECORDED
        lane = self.lane
        try:
            if lane is not None:
                envelope, done, durable_at = await lane.call(
                    lambda: lane.send_and_record(method, params, part, final)
                )
            else:
                envelope = await self.telegram.call(method, params)
                done, durable_at = None, None
        except Exception as exc:
            if classify(exc) is Verdict.NOT_MODIFIED:
                # The preview already shows this text: the edit is done, nothing was sent.
                envelope = {"result": {"message_id": part.edit_message_id}}
                done, durable_at = None, None
            else:
                return await self._failed(part, send_to, started, exc)
        # Telegram has the message now. Until it is recorded, a crash sends it again on restart
        # (the Bot API has no idempotency key): the lane recorded it already (PostgreSQL) or
        # journalled it (SQLite); the outbox is brought up to date here, first in line.
        answered = time.perf_counter()
        result = envelope.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if message_id is None:
            message_id = part.edit_message_id
        recorded, complete = done or await self.recorder.mark_sent(part, message_id, final)
        took = time.perf_counter() - answered
        self.metrics.record_seconds.observe(took)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "part recorded",
                extra={
                    "part_id": part.id,
                    "message_id": message_id,
                    "chat_id": part.chat_id,
                    "recorded_at": time.time(),
                    "durable_at": durable_at,
                    "record_ms": round(took * 1000, 3),
                },
            )
        if not recorded:
            log.warning("part was already recorded by another process", extra={"part_id": part.id})
        self.metrics.sent.inc()
        self.metrics.queued.dec()
        if not complete:
            return SendOutcome(None)
        return SendOutcome(None, completed=part.job_key, completed_job=part.job_id)

    async def _failed(
        self, part: PartRow, send_to: int | None, started: float, exc: Exception
    ) -> SendOutcome:
        verdict = classify(exc)
        if verdict is Verdict.RATE_LIMITED:
            return SendOutcome(part, flood=retry_after(exc) or 1.0)
        if verdict is Verdict.MIGRATED:
            migrate = exc.migrate_to_chat_id if isinstance(exc, TelegramClientError) else None
            if isinstance(migrate, int) and migrate != send_to:
                log.info(
                    "group migrated; sending to the supergroup", extra={"chat_id": part.chat_id}
                )
                return SendOutcome(part, send_to=migrate)
            verdict = Verdict.PERMANENT
        if verdict is Verdict.EDIT_GONE and part.edit_message_id is not None:
            log.info("the preview to write over is gone; sending anew", extra={"part_id": part.id})
            async with self._tx() as conn:
                await store.clear_edit(conn, part.id)
            return SendOutcome(dataclasses.replace(part, edit_message_id=None))
        if verdict is Verdict.BAD_MARKUP and part.parse_mode and not part.plain_fallback:
            log.warning(
                "markup rejected; resending as plain text",
                extra={"chat_id": part.chat_id, "part_id": part.id, "parse_mode": part.parse_mode},
            )
            self.metrics.plain_fallback.inc()
            async with self._tx() as conn:
                await store.set_plain_fallback(conn, part.id)
            return SendOutcome(dataclasses.replace(part, plain_fallback=True))
        if verdict in (Verdict.OUTAGE, Verdict.FAILURE):
            reason = _retry_reason(exc)
            if reason == "unexpected":
                log.exception("delivery send failed unexpectedly", extra={"part_id": part.id})
            return await self._transient(part, started, _error_text(exc), reason)
        if verdict is Verdict.CHAT_GONE:
            return await self._chat_gone(part, _error_text(exc))
        # PERMANENT (or BAD_MARKUP already sent as plain text): it cannot go as it is.
        error = _error_text(exc)
        log.error(
            "message refused by Telegram; parked",
            extra={"chat_id": part.chat_id, "part_id": part.id, "error": error},
        )
        self.metrics.permanently_failed.labels("bad_request").inc()
        async with self._tx() as conn:
            await store.park_job_from(conn, part, error)
        return SendOutcome(None, changed=(part.job_key,))

    async def _transient(
        self, part: PartRow, started: float, error: str, reason: str
    ) -> SendOutcome:
        c = self.config
        attempts = part.attempts + 1
        first = part.first_attempt_at or started
        delay = backoff_delay(attempts, c.retry_base_delay, c.retry_max_delay, jitter=(0.5, 1.0))
        next_at = time.time() + delay
        if attempts >= c.send_max_attempts or next_at - first > c.send_max_seconds:
            log.error(
                "giving up on part after retries; parked",
                extra={
                    "chat_id": part.chat_id,
                    "part_id": part.id,
                    "attempts": attempts,
                    "error": error,
                },
            )
            self.metrics.parked.inc()
            async with self._tx() as conn:
                await store.schedule_retry(conn, part.id, attempts, first, next_at, error)
                await store.park_job_from(conn, part, error)
            return SendOutcome(None, changed=(part.job_key,))
        log.warning(
            "send failed; will retry",
            extra={
                "chat_id": part.chat_id,
                "part_id": part.id,
                "attempt": attempts,
                "retry_in": round(delay, 3),
                "error": error,
            },
        )
        self.metrics.retried.labels(reason).inc()
        async with self._tx() as conn:
            await store.schedule_retry(conn, part.id, attempts, first, next_at, error)
        return SendOutcome(
            dataclasses.replace(
                part, attempts=attempts, first_attempt_at=first, next_attempt_at=next_at
            )
        )

    async def _chat_gone(self, part: PartRow, error: str) -> SendOutcome:
        log.warning(
            "chat unreachable; its replies are skipped until the user writes again",
            extra={"chat_id": part.chat_id, "error": error},
        )
        reason = "blocked" if error.startswith("403") else "chat_not_found"
        self.metrics.permanently_failed.labels(reason).inc()
        async with self._tx() as conn:
            keys = await store.mark_chat_unreachable(conn, part.chat_id, error)
        return SendOutcome(None, changed=tuple({*keys, part.job_key}), unreachable=True)
