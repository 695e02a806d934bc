"""Apply the Alembic migrations programmatically (no alembic.ini anywhere).

The service calls `upgrade_to_head` in its lifespan, `python -m users_service migrate` calls it on
demand. On PostgreSQL the upgrade holds a transaction-scoped advisory lock, so replicas starting
together take turns instead of racing to create the same tables; the second finds nothing to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant shared by every instance of this service ("users" in ASCII).
ADVISORY_LOCK_KEY = 0x7573657273


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade_to_head(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the database to the head revision; return (revision before, revision after)."""

    def upgrade(connection: Connection) -> tuple[str | None, str | None]:
        before = _current(connection)
        command.upgrade(alembic_config(connection), "head")
        return before, _current(connection)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        return await conn.run_sync(upgrade)
