"""The retry queue for history writes: a table in the gateway's database.

When the User Service cannot take a history row (down, timing out, 5xx), the row goes here
instead of being lost, and is replayed at start, every `RETRY_FLUSH_INTERVAL` seconds, and on
`POST /admin/flush-retries`. A table rather than the original JSON-lines file: inserts are
atomic, concurrent workers and replicas cannot corrupt it, and a row is claimed (by pushing its
`next_attempt_at` forward with a conditional UPDATE) before it is sent, so two flushers never
send the same row at the same moment. Before a replay the history is checked for the row, so a
write that reached the service after all is not stored twice.

What a failed replay means is `app.errors.classify`'s verdict: an outage ends the flush (the rest
would fail too) and is never held against the row; a failure is counted, and after
`max_attempts` of them the row is set aside as dead; a permanent refusal (a 4xx) makes it dead
at once. Dead rows are kept for a human (`GET /admin/retry-queue`, `POST .../{id}/retry`).

The original functions `enqueue_failed_interaction` and `flush_retries` live in
`app.storage_retry`, over the running app's queue.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.backoff import backoff_delay
from app.errors import Verdict, classify
from app.logger import get_logger
from app.metrics import Metrics
from app.storage.display import stored_json
from app.storage.engine import is_sqlite, now, write
from app.storage.states import RetryState
from app.storage.tables import storage_retry

log = get_logger(__name__)

#: A row that keeps failing is retried at most this often (seconds).
MAX_BACKOFF = 600.0
#: How long a claimed row is hidden from other flushers while it is being sent.
CLAIM_SECONDS = 60.0


class InteractionWriter(Protocol):
    async def log_interaction(
        self,
        user_id: str,
        message_text: str,
        direction: str = "in",
        telegram_message_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]: ...

    async def find_interactions(
        self,
        user_id: str,
        *,
        telegram_message_id: int | None = None,
        chat_id: int | None = None,
        direction: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]: ...


class RetryQueue:
    """Durable queue of `log_interaction` keyword arguments."""

    def __init__(
        self,
        engine: AsyncEngine,
        writer: InteractionWriter,
        metrics: Metrics | None = None,
        *,
        base_delay: float = 1.0,
        max_attempts: int = 8,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.metrics = metrics
        self.base_delay = base_delay
        self.max_attempts = max_attempts
        self._lock = asyncio.Lock()
        dialect = sqlite if is_sqlite(engine) else postgresql
        self._insert = dialect.insert(storage_retry).on_conflict_do_nothing(
            index_elements=["dedupe_key"]
        )

    async def enqueue(self, payload: dict[str, Any], dedupe_key: str | None = None) -> None:
        """Store one history write for later; the same `dedupe_key` is only ever queued once."""
        async with write(self.engine) as conn:
            await conn.execute(
                self._insert,
                {
                    "dedupe_key": dedupe_key,
                    "payload": json.dumps(payload, ensure_ascii=False),
                    "state": RetryState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": 0.0,
                    "created_at": now(),
                },
            )
        self._count("queued")
        log.warning(
            "history write queued for retry",
            extra={"dedupe_key": dedupe_key, "direction": payload.get("direction")},
        )

    async def flush(self, limit: int = 500) -> int:
        """Send due rows; return how many were settled. Stops early if the service is down."""
        async with self._lock:
            sent = 0
            t = now()
            async with self.engine.connect() as conn:
                due = (
                    await conn.execute(
                        select(
                            storage_retry.c.id, storage_retry.c.payload, storage_retry.c.attempts
                        )
                        .where(
                            storage_retry.c.state == RetryState.PENDING,
                            storage_retry.c.next_attempt_at <= t,
                        )
                        .order_by(storage_retry.c.id)
                        .limit(limit)
                    )
                ).all()
            for row in due:
                if not await self._claim(row.id, t):
                    continue
                payload = json.loads(row.payload)
                try:
                    if not await self._already_stored(payload):
                        await self.writer.log_interaction(**payload)
                except Exception as exc:
                    verdict = classify(exc)
                    self._count("failed")
                    if verdict in (Verdict.OUTAGE, Verdict.RATE_LIMITED):
                        # The service is unreachable or pushing back: the rest would fail too.
                        await self._postpone(row.id, row.attempts, exc)
                        break
                    attempts = row.attempts + 1
                    if verdict is Verdict.PERMANENT or attempts >= self.max_attempts:
                        await self._set_dead(row.id, attempts, exc)
                    else:
                        await self._postpone(row.id, attempts, exc)
                    continue
                async with write(self.engine) as conn:
                    await conn.execute(delete(storage_retry).where(storage_retry.c.id == row.id))
                sent += 1
                self._count("flushed")
            if sent:
                log.info("history writes replayed from the retry queue", extra={"count": sent})
            return sent

    async def _already_stored(self, payload: dict[str, Any]) -> bool:
        """Whether the row is in the history already, so a replay must not write it again.

        A queued write may have reached the service after all (its answer timed out), and a
        flusher that dies between the write and deleting the row replays it at the next start:
        a User Service without a unique key would then keep two copies. Matched by message id
        when there is one, else by the update id the row's metadata carries.
        """
        metadata = payload.get("metadata")
        update_id = metadata.get("update_id") if isinstance(metadata, dict) else None
        message_id = payload.get("telegram_message_id")
        if message_id is None and update_id is None:
            return False
        rows = await self.writer.find_interactions(
            str(payload["user_id"]),
            telegram_message_id=message_id,
            chat_id=payload.get("chat_id"),
            direction=payload.get("direction"),
        )
        if message_id is not None:
            return bool(rows)
        return any(
            isinstance(r.get("metadata"), dict) and r["metadata"].get("update_id") == update_id
            for r in rows
        )

    async def _claim(self, row_id: int, seen_at: float) -> bool:
        async with write(self.engine) as conn:
            result = await conn.execute(
                update(storage_retry)
                .where(storage_retry.c.id == row_id, storage_retry.c.next_attempt_at <= seen_at)
                # No `last_error` while claimed: that is how `make_all_due` tells a row being
                # sent right now from one waiting out a back-off.
                .values(next_attempt_at=now() + CLAIM_SECONDS, last_error=None)
            )
            return bool(result.rowcount)

    async def _postpone(self, row_id: int, attempts: int, exc: BaseException) -> None:
        # One step ahead of the failure count: the first retry of a row waits 2 x base.
        delay = backoff_delay(attempts + 1, self.base_delay, MAX_BACKOFF, jitter=(0.8, 1.2))
        async with write(self.engine) as conn:
            await conn.execute(
                update(storage_retry)
                .where(storage_retry.c.id == row_id)
                .values(
                    attempts=attempts,
                    next_attempt_at=now() + delay,
                    last_error=_describe(exc),
                )
            )

    async def _set_dead(self, row_id: int, attempts: int, exc: BaseException) -> None:
        log.error(
            "history write refused; set aside as dead",
            extra={"row_id": row_id, "attempts": attempts, "error": _describe(exc)},
        )
        self._count("dead")
        async with write(self.engine) as conn:
            await conn.execute(
                update(storage_retry)
                .where(storage_retry.c.id == row_id)
                .values(state=RetryState.DEAD, attempts=attempts, last_error=_describe(exc))
            )

    async def requeue(self, row_id: int) -> bool:
        """Give a dead row a fresh start (admin action); False when there is no such dead row."""
        async with write(self.engine) as conn:
            result = await conn.execute(
                update(storage_retry)
                .where(storage_retry.c.id == row_id, storage_retry.c.state == RetryState.DEAD)
                .values(state=RetryState.PENDING, attempts=0, next_attempt_at=0.0)
            )
            return bool(result.rowcount)

    async def size(self, state: RetryState = RetryState.PENDING) -> int:
        async with self.engine.connect() as conn:
            count = select(func.count()).select_from(storage_retry)
            result = await conn.execute(count.where(storage_retry.c.state == state))
            return int(result.scalar_one())

    async def list(self, limit: int = 100, state: RetryState | None = None) -> list[dict[str, Any]]:
        query = select(storage_retry).order_by(storage_retry.c.id).limit(limit)
        if state is not None:
            query = query.where(storage_retry.c.state == state)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [{**r._mapping, "payload": stored_json(r.payload)} for r in rows]

    async def make_all_due(self) -> None:
        """An operator asked for a flush: do not make them wait for back-off timers."""
        # Only rows waiting out a back-off after a failure (they carry its `last_error`); a row
        # claimed by a flusher right now has none and must keep its claim.
        async with write(self.engine) as conn:
            await conn.execute(
                update(storage_retry)
                .where(
                    storage_retry.c.state == RetryState.PENDING,
                    storage_retry.c.last_error.is_not(None),
                    storage_retry.c.next_attempt_at > now(),
                )
                .values(next_attempt_at=0.0)
            )

    def _count(self, event: str) -> None:
        if self.metrics is not None:
            self.metrics.retry_queue.labels(event).inc()


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:2000]
