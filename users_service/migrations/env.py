"""Alembic environment for the User Service.

Migrations always run on a connection handed in by `users_service.migrate` through
`config.attributes["connection"]`: the async engine is the service's own, so the same code path
(and the same PostgreSQL advisory lock) serves the lifespan, the CLI and the tests.
"""

from __future__ import annotations

from alembic import context

from users_service.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run User Service migrations with `python -m users_service migrate`, not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite can only ALTER by copying tables; batch mode does that
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
