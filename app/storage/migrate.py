"""The gateway's schema, brought up to date with Alembic, at start and by `messaging migrate`.

`create_all` used to build the schema: it creates missing tables but never alters existing
ones, so a database created before a column was added never got it. Now every change is a
migration (`app/storage/migrations/versions/`), applied in order:

- at start-up (`Gateway.start`), before anything reads or writes;
- on demand with `messaging migrate` (e.g. in a deploy step before the new version starts).

Several replicas may start at once. On PostgreSQL the upgrade holds a transaction-scoped
advisory lock, so they take turns and the later ones find nothing to do; on SQLite, processes
take turns on a lock file beside the database.

A database created by `create_all` before migrations existed has the tables but no
`alembic_version`; it is recognised by its columns and upgraded in place, data kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.logger import get_logger
from app.storage.engine import write

log = get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant shared by every replica ("gateway" in ASCII, truncated to 63 bits).
ADVISORY_LOCK_KEY = 0x67617465776179


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _legacy_revision(connection: Connection) -> str | None:
    """The revision a pre-migration (`create_all`) database is at, or None for an empty one."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("inbox"):
        return None
    if inspector.has_table("delivery_chats"):
        columns = {c["name"] for c in inspector.get_columns("delivery_chats")}
        if "pace_at" in columns:
            return "0002"
    return "0001"  # 0001 creates only the tables that are missing


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    before = _current(connection)
    if before is None:
        legacy = _legacy_revision(connection)
        if legacy == "0002":
            command.stamp(alembic_config(connection), legacy)
            log.info("database created before migrations; stamped", extra={"revision": legacy})
        elif legacy is not None:
            log.info("database created before migrations; upgrading in place")
    command.upgrade(alembic_config(connection), "head")
    return before, _current(connection)


async def upgrade_to_head(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the database to the head revision; (revision before, revision after)."""
    async with _sqlite_file_lock(engine), write(engine) as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        before, after = await conn.run_sync(_upgrade)
    if before != after:
        log.info("database migrated", extra={"from": before, "to": after})
    return before, after


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """SQLite: processes migrating one file take turns on a lock file beside it.

    (SQLite's own lock is taken too late: two processes both read "no alembic_version" in
    their deferred transactions, then both try to create it.)
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as handle:  # noqa: ASYNC230 - a lock file
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def create_schema(engine: AsyncEngine) -> None:
    """The schema at head (the name tests and scripts have used since before migrations)."""
    await upgrade_to_head(engine)
