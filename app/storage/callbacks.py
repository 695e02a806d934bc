"""Button data longer than Telegram's 64-byte `callback_data`, kept behind a short key.

The keyboard builder (`app.processing.keyboards`) swaps long data for `make_key(data)` and keeps
the data here, in the `callback_data` table; a pressed button's key is looked up again. Rows
are pruned after a retention period (`prune`), long enough that the buttons people still press
keep working.
"""

from __future__ import annotations

import base64
import hashlib

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.engine import now, write
from app.storage.tables import callback_data

KEY_PREFIX = "cb:"


def make_key(data: str) -> str:
    """A short key (25 ASCII characters) derived from the data.

    Deterministic on purpose: storing the same data twice (a replayed reply, two replicas) gives
    the same key and one row, so `put` is idempotent without a read first.
    """
    digest = hashlib.sha256(data.encode("utf-8", "surrogatepass")).digest()[:16]
    return KEY_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class SqlCallbackStore:
    """A `CallbackStore` on the gateway database's `callback_data` table (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put(self, data: str) -> str:
        key = make_key(data)
        values = {"key": key, "data": data, "created_at": now()}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(callback_data).values(**values).on_conflict_do_nothing()
        async with write(self.engine) as conn:
            await conn.execute(stmt)
        return key

    async def get(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            row = await conn.execute(select(callback_data.c.data).where(callback_data.c.key == key))
            value = row.scalar_one_or_none()
        return value if isinstance(value, str) else None

    async def prune(self, older_than_seconds: float) -> int:
        """Forget data stored longer ago than the retention; returns the rows deleted."""
        async with write(self.engine) as conn:
            result = await conn.execute(
                delete(callback_data).where(callback_data.c.created_at < now() - older_than_seconds)
            )
            return int(result.rowcount or 0)
