"""`python -m users_service migrate`: apply pending migrations without starting the server.

Useful before a deploy (run once, then start N replicas) and for checking a database by hand.
Failures end in one line on stderr and a non-zero exit, never a traceback: a bad variable exits
2 (as the server does), an unusable database exits 1, with the driver's message redacted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from users_service.config import Settings, load_settings_or_exit
from users_service.db import DATABASE_ERRORS, describe_db_error, make_engine
from users_service.logs import redactor
from users_service.migrate import current_revision, head_revision, upgrade_to_head

T = TypeVar("T")

# Rich tracebacks with local variables would print a connection's keyword arguments (password).
cli = typer.Typer(
    help="User Service maintenance commands.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = make_engine(settings.async_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    redactor.update(settings.secret_values())
    try:
        return asyncio.run(run())
    except DATABASE_ERRORS as exc:
        where = settings.async_url.render_as_string(hide_password=True)
        message = redactor.redact(describe_db_error(exc))
        typer.echo(f"users-service: cannot use the database {where}: {message}", err=True)
        raise typer.Exit(1) from None


@cli.command()
def migrate() -> None:
    """Upgrade the database named by DATABASE_URL to the newest schema."""
    before, after = _with_engine(load_settings_or_exit(), upgrade_to_head)
    if before == after:
        typer.echo(f"already at {after}; nothing to do")
    else:
        typer.echo(f"migrated {before or 'empty database'} -> {after}")


@cli.command()
def current() -> None:
    """Print the database's schema revision and the newest one this code knows."""
    rev = _with_engine(load_settings_or_exit(), current_revision)
    typer.echo(f"database: {rev or 'empty'}; head: {head_revision()}")


if __name__ == "__main__":
    cli()
