"""Alembic head applies to an empty database, twice is a no-op, and matches the models.

Run on SQLite and PostgreSQL because the schema uses types that differ between them (UUID,
JSONB, BIGINT keys) and SQLite's rowid rules are easy to get wrong.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from tests.support.pg import temp_database
from tests.support.servers import ROOT
from users_service.config import async_database_url
from users_service.db import make_engine
from users_service.migrate import head_revision, upgrade_to_head
from users_service.models import Base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'users.db'}"  # folder does not exist yet
    else:
        with temp_database("users_mig") as url:
            yield url


def _schema(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    return {
        table: {
            "columns": sorted(c["name"] for c in insp.get_columns(table)),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "indexes": sorted(i["name"] or "" for i in insp.get_indexes(table)),
            "checks": sorted(c["name"] or "" for c in insp.get_check_constraints(table)),
        }
        for table in sorted(insp.get_table_names())
    }


def _diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


async def test_head_applies_to_an_empty_database_and_twice_is_a_no_op(empty_database: str) -> None:
    engine = make_engine(async_database_url(empty_database))
    try:
        assert await upgrade_to_head(engine) == (None, head_revision())
        async with engine.connect() as conn:
            first = await conn.run_sync(_schema)
        assert await upgrade_to_head(engine) == (head_revision(), head_revision())
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema) == first
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()

    assert set(first) == {"alembic_version", "users", "interactions"}
    assert first["users"]["columns"] == sorted(
        ["id", "telegram_id", "full_name", "phone", "email", "created_at", "updated_at"]
    )
    assert first["interactions"]["columns"] == sorted(
        [
            "id",
            "user_id",
            "chat_id",
            "telegram_message_id",
            "direction",
            "message_text",
            "metadata",
            "created_at",
        ]
    )
    assert ("user_id", "chat_id", "telegram_message_id") in first["interactions"]["unique"]
    assert ("telegram_id",) in first["users"]["unique"]
    assert "ix_interactions_user_id_id_desc" in first["interactions"]["indexes"]
    assert first["interactions"]["checks"] == ["ck_interactions_direction"]
    # The models describe exactly what the migrations build (no forgotten migration).
    assert diff == []


def test_migrate_command(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PATH": "/usr/bin:/bin"}

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "users_service", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert f"-> {head_revision()}" in run()
    assert "nothing to do" in run()
