"""Engine construction: one place that knows the differences between SQLite and PostgreSQL.

SQLite needs a few pragmas to behave like a server database under concurrent requests: foreign
keys are off by default, and without WAL and a busy timeout a second writer fails at once with
"database is locked" instead of waiting its turn.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession
from sqlalchemy.pool import StaticPool

from users_service.config import sqlite_path

SQLITE_BUSY_TIMEOUT_MS = 10_000

#: What a database that is down, unreachable, refusing us or overloaded raises: SQLAlchemy wraps
#: driver errors in DBAPIError (asyncpg's at connect time too), sockets raise OSError (refused,
#: unknown host, timeout), an exhausted pool raises its TimeoutError.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, PoolTimeoutError, OSError)


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


def describe_db_error(exc: BaseException) -> str:
    """`ErrorClass: first line of the driver's message`, for errors an operator has to act on.

    The driver's own exception (`exc.orig`) says more than SQLAlchemy's wrapper, whose text also
    quotes the SQL statement. The text may still contain anything a server chose to say, so it
    goes out only through the redacting log handlers (or `logs.redactor.redact`).
    """
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    name = orig.__class__.__name__
    return f"{name}: {lines[0][:300]}" if lines else name
