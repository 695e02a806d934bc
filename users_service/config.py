"""Configuration of the User Service, read from the environment.

The service has its own database (`DATABASE_URL`), separate from the gateway's, because it stands
in for a service a team may run elsewhere (on Supabase, for instance). Users type ordinary URLs
(`sqlite:///var/users.db`, `postgresql://user@host/db`); choosing the async driver is our job, so
a URL copied from a dashboard just works.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///./var/users.db"

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_BACKEND_ALIASES = {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_URL_SHAPES = "sqlite:///path or postgresql://user:password@host:port/database"


def async_database_url(raw: str) -> URL:
    """Turn a user-facing database URL into one that names the async driver we ship.

    Any driver in the URL is replaced (`postgresql+psycopg2://` becomes `postgresql+asyncpg://`),
    `postgres://` is accepted as Heroku/Supabase write it, and libpq's `sslmode` is translated to
    asyncpg's `ssl` because asyncpg rejects the former. Raises ValueError for anything else.

    The messages never quote the URL or any part of it (not even the scheme or the port): the
    value may carry a password, and a malformed one may carry it where the scheme or host should
    be. Mistakes that would only show at connect time, with a traceback, are caught here.
    """
    try:
        url = make_url(raw.strip())
        port = url.port  # parsed lazily on some versions; a non-number raises ValueError
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL; expected {_URL_SHAPES}") from None
    backend = _BACKEND_ALIASES.get(url.drivername.split("+", 1)[0])
    if backend is None:
        raise ValueError(f"unsupported database; use {_URL_SHAPES}")
    if backend == "sqlite":
        if url.host or url.username or url.password or port:
            raise ValueError(
                "a SQLite URL has no host or user; use sqlite:///relative/path.db"
                " or sqlite:////absolute/path.db"
            )
    else:
        if "@" in (url.host or ""):
            raise ValueError(
                "the user name or password contains a reserved character ('@', ':' or '/');"
                " percent-encode it (%40, %3A, %2F)"
            )
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("the port must be between 1 and 65535")
        sslmode = url.query.get("sslmode")
        if sslmode is not None and sslmode not in _SSLMODES:
            raise ValueError(f"sslmode must be one of {', '.join(_SSLMODES)}")
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
    """Environment variables: `DATABASE_URL`, `API_KEY`, `LOG_LEVEL`, `MAX_BODY_BYTES`,
    `MAX_METADATA_BYTES`.

    `database_url` is kept out of repr because a PostgreSQL URL may carry a password; an empty
    `API_KEY` means "no key" so that a test harness can switch a key off with `API_KEY=`.
    Build it with `load_settings()` in entry points: pydantic's own error quotes the bad value.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    api_key: SecretStr | None = None
    log_level: str = "INFO"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_metadata_bytes: int = Field(default=262_144, ge=1024)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        async_database_url(value)  # fail at start with a message naming DATABASE_URL
        return value.strip()

    @field_validator("api_key")
    @classmethod
    def _empty_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @property
    def async_url(self) -> URL:
        return async_database_url(self.database_url)

    def secret_values(self) -> list[str]:
        """What must never appear in a log line: the API key and the database password.

        The password is listed as configured (percent-encoded) and decoded, since either form
        can turn up in a driver's message.
        """
        values = [self.api_key.get_secret_value()] if self.api_key else []
        password = self.async_url.password
        if password:
            values.append(str(password))
        try:
            raw = urlsplit(self.database_url).password
        except ValueError:
            raw = None
        if raw:
            values.append(raw)
        return values


class ConfigError(Exception):
    """Configuration is invalid; the message names variables, never their values."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad variable, by its environment name, without the value pydantic quotes.

    Our validators never put the value in their messages; pydantic's built-in ones (integers,
    bounds) do not either. As a last guard, a message that contains the input anyway has it
    replaced.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = err.get("loc", ())
        name = str(loc[0]).upper() if loc else "configuration"
        if err.get("type") == "missing":
            msg = "is required but not set"
        else:
            msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        value = err.get("input")
        if isinstance(value, str) and len(value.strip()) >= 4 and value.strip() in msg:
            msg = msg.replace(value.strip(), "***")
        lines.append(f"  {name}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """`Settings` from the environment, or `ConfigError` with a secret-free message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_settings_or_exit() -> Settings:
    """For entry points: the problem on stderr and exit code 2, instead of a traceback."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"users-service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
