"""The gateway with its database round trips counted: for `bench.scale` only, never production.

SQLAlchemy events on every engine of the process count what goes to the database: statements
(`before_cursor_execute`), transaction starts and ends (`begin`, `commit`, `rollback`) and pool
check-outs (on PostgreSQL each is a pre-ping, one round trip more), new connections (`connect`:
each one a TCP handshake, startup and authentication, so a pool too small for the load shows
here) and the most connections checked out at once. `GET /bench/sql` returns
the counters, so the bench divides them by the updates the process handled. The send lane's
PostgreSQL record (one autocommit statement per sent part, on its own asyncpg pool) is not
seen here; the bench adds one per message sent.

    python -m uvicorn --factory bench.counted_app:create
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from app.main import create_app

COUNTS: Counter[str] = Counter()


SHAPES: Counter[str] = Counter()  # statements by their first words: where round trips go


@event.listens_for(Engine, "before_cursor_execute")
def _statement(
    conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
) -> None:
    COUNTS["statements"] += 1
    SHAPES[" ".join(statement.split()[:4])[:60]] += 1


@event.listens_for(Engine, "begin")
def _begin(*_: Any) -> None:
    COUNTS["begins"] += 1


@event.listens_for(Engine, "commit")
def _commit(*_: Any) -> None:
    COUNTS["commits"] += 1


@event.listens_for(Engine, "rollback")
def _rollback(*_: Any) -> None:
    COUNTS["rollbacks"] += 1


@event.listens_for(Pool, "checkout")
def _checkout(*_: Any) -> None:
    COUNTS["checkouts"] += 1
    COUNTS["checked_out"] += 1
    COUNTS["checked_out_max"] = max(COUNTS["checked_out_max"], COUNTS["checked_out"])


@event.listens_for(Pool, "checkin")
def _checkin(*_: Any) -> None:
    COUNTS["checked_out"] -= 1


@event.listens_for(Pool, "connect")
def _connect(*_: Any) -> None:
    COUNTS["connects"] += 1  # a new database connection: TCP, startup, auth (pool too small?)


def create() -> FastAPI:
    """The real app (configuration from the environment) plus `GET /bench/sql`."""
    app = create_app()

    async def sql_counts() -> dict[str, Any]:
        return dict(COUNTS) | {"shapes": dict(SHAPES.most_common(25))}

    app.add_api_route("/bench/sql", sql_counts, methods=["GET"])
    return app
