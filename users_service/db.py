"""Engine construction: one place that knows the differences between SQLite and PostgreSQL.

SQLite needs a few pragmas to behave like a server database under concurrent requests: foreign
keys are off by default, and without WAL and a busy timeout a second writer fails at once with
"database is locked" instead of waiting its turn.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession
from sqlalchemy.pool import StaticPool

from users_service.config import sqlite_path

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: URL) -> AsyncEngine:
    """An async engine for `url` (already normalised by `config.async_database_url`)."""
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is None:  # in-memory: every connection would see its own empty database
            engine = create_async_engine(url, poolclass=StaticPool)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, pool_size=10, max_overflow=20)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
