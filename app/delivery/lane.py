"""The send lane: Telegram's answer recorded on a thread of its own, whatever the app is doing.

From the moment Telegram accepts a `sendMessage` to the moment our record of it is durable, a
crash sends the message again on restart (the Bot API has no idempotency key). On the app's
event loop that window is as wide as the loop is busy: a chaos run with three replicas on two
cores measured 3-226 ms between Telegram's answer and the commit, with pipelines, webhooks and
JSON all queued ahead of the answer. So each send's call and its record run on a dedicated
thread with its own event loop, which does nothing else:

- PostgreSQL: the lane keeps its own connections and records with one autocommit statement
  (the part, and its job when it was the last part); once the statement is on the wire the
  server commits it even if this process dies. Answers that arrive together are recorded side
  by side (a small pool, connected and with the statement prepared before the first send, so
  no record waits for a connection), not one after another.
- SQLite: a single writer at a time, and the app's writers hold the lock through their fsync
  (`SQLITE_SYNCHRONOUS=FULL`), so the lane does not write the main file: it appends to a small
  journal next to it (`<database>-sent`, WAL, written only by the lane, no fsync at commit:
  it has to survive a process crash, not a power loss). The app applies the record to the
  outbox right after, and every start replays the journal before anything is sent.

The GIL's switch interval is lowered to 1 ms so the lane gets its turn promptly.
`delivery_record_seconds` measures the step; docs/architecture.md has the measured window.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import URL

from app.delivery.ports import TelegramAPI
from app.delivery.recorder import MARK_SENT_POSTGRES
from app.delivery.states import JobState
from app.delivery.store import PartRow
from app.logger import get_logger

log = get_logger(__name__)

T = TypeVar("T")
#: (the lane's Telegram client, and how to close it), built inside the lane's loop.
TelegramFactory = Callable[[], tuple[TelegramAPI, Callable[[], Awaitable[None]]]]
SWITCH_INTERVAL = 0.001
#: PostgreSQL connections the lane opens before its first send and keeps: one per answer that
#: may arrive at once. A chaos run saw the third answer of a fresh process's first burst wait
#: 17 ms for a third connection to be opened (TLS, authentication) and a kill land inside it.
LANE_CONNECTIONS = 8


class SendJournal:
    """SQLite only: `part_id -> message_id` of every part Telegram accepted, on its own file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sent (part_id INTEGER PRIMARY KEY, job_id INTEGER,"
            " message_id INTEGER, sent_at REAL NOT NULL)"
        )
        self._conn = conn

    def add(self, part: PartRow, message_id: int | None) -> None:
        assert self._conn is not None
        self._conn.execute(
            "INSERT OR IGNORE INTO sent (part_id, job_id, message_id, sent_at) VALUES (?, ?, ?, ?)",
            (part.id, part.job_id, message_id, time.time()),
        )

    def entries(self) -> list[tuple[int, int, int | None, float]]:
        assert self._conn is not None
        rows = self._conn.execute("SELECT part_id, job_id, message_id, sent_at FROM sent")
        return [(int(a), int(b), c, float(d)) for a, b, c, d in rows.fetchall()]

    def forget(self, older_than: float) -> None:
        """Drop entries applied long ago (the outbox has them)."""
        assert self._conn is not None
        self._conn.execute("DELETE FROM sent WHERE sent_at < ?", (older_than,))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def journal_path(database: str | None) -> Path | None:
    """Where the journal of a SQLite database lives (None for an in-memory database)."""
    if not database or database == ":memory:":
        return None
    return Path(database + "-sent")


async def _warm(conn: Any) -> None:
    """Prepare the record statement on a new connection, so that the first record made on
    it is one round trip (asyncpg caches prepared statements per connection). The ids match
    nothing: the statement changes no row."""
    await conn.fetchrow(MARK_SENT_POSTGRES, None, 0.0, -1, "warm", -1)


class SendLane:
    """A thread with its own event loop, for the send → record step (see the module docstring)."""

    def __init__(
        self,
        make_telegram: TelegramFactory,
        url: URL,
        *,
        journal: SendJournal | None = None,
    ) -> None:
        self._make_telegram = make_telegram
        self._url = url
        self.journal = journal
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.telegram: TelegramAPI | None = None
        self._close_telegram: Callable[[], Awaitable[None]] | None = None
        self._pg: Any = None
        self._pg_lock: asyncio.Lock | None = None

    @property
    def postgres(self) -> bool:
        return self.journal is None

    def start(self) -> None:
        if self._thread is not None:
            return
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        if self.journal is not None:
            self.journal.open()
        self._thread = threading.Thread(target=self._main, name="send-lane", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        self.telegram, self._close_telegram = self._make_telegram()
        self._pg_lock = asyncio.Lock()
        if self.postgres:
            # Connected before the first send: opening connections inside the window between
            # Telegram's answer and the record would widen it (measured: 34-77 ms at start-up).
            try:
                loop.run_until_complete(self._open_pool())
            except Exception as exc:  # the first record retries; the app's loop is the fallback
                log.warning("send lane could not connect yet", extra={"error": repr(exc)})
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `fn()` on the lane's loop; await its result from the caller's loop."""
        assert self.loop is not None
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(fn(), self.loop)
        return await asyncio.wrap_future(future)

    async def send_and_record(
        self, method: str, params: dict[str, Any], part: PartRow, final: JobState
    ) -> tuple[dict[str, Any], tuple[bool, bool] | None, float | None]:
        """On the lane: send, then record at once. Returns Telegram's envelope; on PostgreSQL
        (recorded, job complete), on SQLite None (the journal holds the record, the caller
        updates the outbox); and when the record was durable (None: the lane could not)."""
        assert self.telegram is not None
        envelope = await self.telegram.call(method, params)
        result = envelope.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        try:
            if self.journal is not None:
                self.journal.add(part, message_id)
                done = None
            else:
                done = await self._record_postgres(part, message_id, final)
            return envelope, done, time.time()
        except Exception as exc:
            # Telegram has the message: never report this as a failed send (it would be sent
            # again). The caller records it on the app's loop instead, retrying until it can.
            log.error(
                "send lane could not record a sent part; the app records it",
                extra={"part_id": part.id, "error": f"{exc.__class__.__name__}: {exc}"},
            )
            return envelope, None, None

    async def _open_pool(self) -> None:
        import asyncpg

        assert self._pg_lock is not None
        async with self._pg_lock:
            if self._pg is None:
                dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
                self._pg = await asyncpg.create_pool(
                    dsn,
                    min_size=LANE_CONNECTIONS,
                    max_size=LANE_CONNECTIONS,
                    max_inactive_connection_lifetime=0,  # idle for hours, still connected
                    init=_warm,
                )

    async def _record_postgres(
        self, part: PartRow, message_id: int | None, final: JobState
    ) -> tuple[bool, bool]:
        """One autocommit statement on a pooled connection of the lane's own: answers that
        arrive together (a burst) are recorded side by side, none waits for another's turn."""
        if self._pg is None:
            await self._open_pool()
        row = await self._pg.fetchrow(
            MARK_SENT_POSTGRES, message_id, time.time(), part.id, str(final), part.job_id
        )
        return bool(row["recorded"]), bool(row["completed"])

    async def stop(self) -> None:
        if self.loop is None or self._thread is None:
            return

        async def close() -> None:
            if self._close_telegram is not None:
                await self._close_telegram()
            if self._pg is not None:
                await self._pg.close()

        try:
            await self.call(close)
        except Exception as exc:
            log.debug("send lane close failed", extra={"error": repr(exc)})
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        if self.journal is not None:
            self.journal.close()
        self._thread = None
        self.loop = None
