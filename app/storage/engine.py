"""The gateway's own database: engine construction, and the write gate every writer passes.

One code path serves SQLite (the embedded default) and PostgreSQL (several replicas sharing
state). Users write plain URLs (`sqlite:///var/gateway.db`, `postgresql://user@host/db`); the
async driver is ours to choose, so `async_url` maps them to aiosqlite / asyncpg.

SQLite is tuned for a write-heavy inbox: WAL (readers never block the writer), a busy timeout
instead of "database is locked" errors, and a configurable `synchronous` level (FULL: a commit
survives power loss; NORMAL: survives a process crash, faster).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.config import sqlite_path


def async_url(url: str) -> str:
    """Map a user-facing database URL to the async driver the gateway uses."""
    url = url.strip()
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith("sqlite+aiosqlite:///"):
        return url
    m = re.match(r"^postgres(?:ql)?(?:\+asyncpg)?://(.*)$", url)
    if m:
        return "postgresql+asyncpg://" + m.group(1)
    raise ValueError("DATABASE_URL must start with sqlite:/// or postgresql://")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(
    url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 20, max_overflow: int = 0
) -> AsyncEngine:
    """Create the async engine; for SQLite also create the file's folder and set pragmas.

    On PostgreSQL, `pool_size` connections stay open and `max_overflow` more are opened at a
    peak and closed on return: size the pool for the work (`Settings.db_pool_size`), since
    every overflow check-out pays a new connection. The pool hands out the most recently used
    connection first (LIFO): at low load a few connections stay warm (asyncpg prepares each
    statement once per connection) and the rest sit idle.
    """
    driver_url = async_url(url)
    if driver_url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(driver_url, connect_args={"timeout": 30})
        sync_level = "FULL" if sqlite_synchronous.upper() == "FULL" else "NORMAL"

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync_level}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(
        driver_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_use_lifo=True,
    )


class WriteGate:
    """One process's SQLite write transactions, one at a time, urgent ones first.

    SQLite has a single writer. Left to itself, a second connection that wants to write waits in
    SQLite's busy handler, which sleeps 1, 2, 5 ... 100 ms between retries: measured under a chaos
    run, a send's result waited up to 245 ms behind other writers that way, and a kill inside that
    wait re-sent the message on restart. Queueing the process's writers here instead costs
    nothing (they would be serialised anyway) and lets the one write that must not wait, the
    record of a message Telegram has just accepted, go next (`urgent=True`).
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._normal)

    async def acquire(self, *, urgent: bool = False) -> None:
        if not self._held and not self._urgent and not self._normal:
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()  # it was handed to us just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    (self._urgent if urgent else self._normal).remove(future)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # ownership passes on; `_held` stays True
                    return
        self._held = False

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()


_gates: weakref.WeakKeyDictionary[Any, WriteGate] = weakref.WeakKeyDictionary()


def write_gate(engine: AsyncEngine) -> WriteGate | None:
    """The engine's write gate on SQLite (one per engine); None on PostgreSQL (row locks)."""
    if not is_sqlite(engine):
        return None
    gate = _gates.get(engine.sync_engine)
    if gate is None:
        gate = _gates[engine.sync_engine] = WriteGate()
    return gate


@contextlib.asynccontextmanager
async def write(engine: AsyncEngine, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
    """A write transaction, committed on exit; on SQLite it first passes the write gate."""
    gate = write_gate(engine)
    if gate is None:
        async with engine.begin() as conn:
            yield conn
        return
    async with gate.hold(urgent=urgent), engine.begin() as conn:
        yield conn


def now() -> float:
    """Wall-clock seconds: stored timestamps are comparable across processes and replicas."""
    return time.time()
