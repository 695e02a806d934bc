"""Alembic environment for the gateway's own database.

Migrations always run on a connection handed in by `app.storage.migrate` through
`config.attributes["connection"]`, so the start-up path, `messaging migrate` and the tests share
one code path (and one lock). There is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from app.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run gateway migrations with `messaging migrate`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite can only ALTER some things by copying tables
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
