"""`python -m users_service migrate`: apply pending migrations without starting the server.

Useful before a deploy (run once, then start N replicas) and for checking a database by hand.
"""

from __future__ import annotations

import asyncio

import typer

from users_service.config import Settings
from users_service.db import make_engine
from users_service.migrate import current_revision, head_revision, upgrade_to_head

cli = typer.Typer(help="User Service maintenance commands.", no_args_is_help=True)


async def _migrate(settings: Settings) -> tuple[str | None, str | None]:
    engine = make_engine(settings.async_url)
    try:
        return await upgrade_to_head(engine)
    finally:
        await engine.dispose()


async def _current(settings: Settings) -> str | None:
    engine = make_engine(settings.async_url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


@cli.command()
def migrate() -> None:
    """Upgrade the database named by DATABASE_URL to the newest schema."""
    settings = Settings()
    before, after = asyncio.run(_migrate(settings))
    if before == after:
        typer.echo(f"already at {after}; nothing to do")
    else:
        typer.echo(f"migrated {before or 'empty database'} -> {after}")


@cli.command()
def current() -> None:
    """Print the database's schema revision and the newest one this code knows."""
    rev = asyncio.run(_current(Settings()))
    typer.echo(f"database: {rev or 'empty'}; head: {head_revision()}")


if __name__ == "__main__":
    cli()
