"""The record of a message Telegram accepted, in the outbox, on the app's event loop.

With the send lane (`lane.py`, the production set-up) this is the second step on SQLite (the
lane's journal already holds the record) and the fallback on PostgreSQL (the lane could not
record); without a lane (tests with a fake Telegram) it is the record itself.


From Telegram's answer to this commit, a crash re-sends the message on restart (the Bot API
has no idempotency key). The window is kept as narrow as the hardware allows:

- PostgreSQL: one statement (both the part and, when it was the last, its job), in autocommit
  on a connection kept for this alone, so the commit needs no pool checkout and no BEGIN or
  COMMIT round trip: the statement is on the wire the moment the answer has been read, and the
  server commits it even if this process dies right after. (Measured under a 3-replica chaos
  run: a BEGIN, two UPDATEs and a COMMIT, each waiting for its turn on a busy event loop, left
  the record 3-226 ms behind Telegram's answer.)
- SQLite: the two statements in one transaction, first in line at the write gate.

A record that fails (the database blinked) is retried, never given up: giving up would leave
the part pending and send it again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.delivery import store
from app.delivery.states import JobState, PartState
from app.delivery.store import PartRow
from app.logger import get_logger
from app.storage.engine import is_sqlite, write

log = get_logger(__name__)

# Constant statement; every value is a bound parameter. Data-modifying CTEs see one snapshot,
# so "no other part of the job is unsent" excludes the part being marked here.
MARK_SENT_POSTGRES = f"""
WITH part AS (
    UPDATE delivery_parts SET state = '{PartState.SENT}', message_id = $1, sent_at = $2,
        last_error = NULL
    WHERE id = $3 AND state = '{PartState.PENDING}'
    RETURNING job_id
), job AS (
    UPDATE delivery_jobs SET state = $4, finished_at = $2, last_error = NULL
    WHERE id IN (SELECT job_id FROM part) AND state = '{JobState.PENDING}'
      AND NOT EXISTS (
        SELECT 1 FROM delivery_parts
        WHERE job_id = $5 AND id <> $3 AND state <> '{PartState.SENT}'
      )
    RETURNING id
)
SELECT (SELECT count(*) FROM part) AS recorded, (SELECT count(*) FROM job) AS completed
"""  # noqa: S608 - only our own enum values are formatted in


class Recorder:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = is_sqlite(engine)
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self._lock = asyncio.Lock()

    async def mark_sent(
        self, part: PartRow, message_id: int | None, final: JobState
    ) -> tuple[bool, bool]:
        """(recorded now, job complete); retried until the database takes it."""
        delay = 0.05
        while True:
            try:
                return await self._mark_sent(part, message_id, final)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "could not record a sent part; retrying (it must not be sent again)",
                    extra={"part_id": part.id, "error": f"{exc.__class__.__name__}: {exc}"},
                )
                await self._drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _mark_sent(
        self, part: PartRow, message_id: int | None, final: JobState
    ) -> tuple[bool, bool]:
        if self._sqlite:
            async with write(self.engine, urgent=True) as conn:
                return await store.mark_sent(conn, part, message_id, final)
        async with self._lock:
            driver = self._driver or await self._connect()
            row = await driver.fetchrow(
                MARK_SENT_POSTGRES, message_id, time.time(), part.id, str(final), part.job_id
            )
        return bool(row["recorded"]), bool(row["completed"])

    async def _connect(self) -> Any:
        self._conn = await self.engine.connect()
        raw = await self._conn.get_raw_connection()
        self._driver = raw.driver_connection
        return self._driver

    async def _drop(self) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            try:
                await conn.invalidate()
                await conn.close()
            except Exception as exc:  # already broken: nothing more to do
                log.debug("recorder connection close failed", extra={"error": repr(exc)})

    async def close(self) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            await conn.close()
