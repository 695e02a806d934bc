"""Configuration of the User Service, read from the environment.

The service has its own database (`DATABASE_URL`), separate from the gateway's, because it stands
in for a service a team may run elsewhere (on Supabase, for instance). Users type ordinary URLs
(`sqlite:///var/users.db`, `postgresql://user@host/db`); choosing the async driver is our job, so
a URL copied from a dashboard just works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///./var/users.db"

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_BACKEND_ALIASES = {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}


def async_database_url(raw: str) -> URL:
    """Turn a user-facing database URL into one that names the async driver we ship.

    Any driver in the URL is replaced (`postgresql+psycopg2://` becomes `postgresql+asyncpg://`),
    `postgres://` is accepted as Heroku/Supabase write it, and libpq's `sslmode` is translated to
    asyncpg's `ssl` because asyncpg rejects the former. Raises ValueError for anything else.
    """
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from None
    backend = _BACKEND_ALIASES.get(url.drivername.split("+", 1)[0])
    if backend is None:
        raise ValueError(
            f"unsupported database {url.drivername!r}: use sqlite:///path or postgresql://..."
        )
    url = url.set(drivername=_ASYNC_DRIVERS[backend])
    if backend == "postgresql" and "sslmode" in url.query:
        query: dict[str, Any] = dict(url.query)
        query["ssl"] = query.pop("sslmode")
        url = url.set(query=query)
    return url


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for PostgreSQL and in-memory SQLite."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


class Settings(BaseSettings):
    """Environment variables: `DATABASE_URL`, `API_KEY`, `LOG_LEVEL`.

    `database_url` is kept out of repr because a PostgreSQL URL may carry a password; an empty
    `API_KEY` means "no key" so that a test harness can switch a key off with `API_KEY=`.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    api_key: SecretStr | None = None
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        async_database_url(value)  # fail at start with a message naming DATABASE_URL
        return value

    @field_validator("api_key")
    @classmethod
    def _empty_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @property
    def async_url(self) -> URL:
        return async_database_url(self.database_url)
