"""Configuration, read once from the environment (and a `.env` file) and validated at start.

`Settings` keeps the field names of the original specification and adds what the durable
pipeline and the delivery engine need. A missing or invalid variable must stop the process
before it serves anything, with a message that names the variable and never echoes its value
(pydantic's own error text includes the input, which may be a token): see `load_settings`.

`settings` stays importable as in the original (`from app.config import settings`), but is built
lazily on first access so that importing any module of the app needs no environment; tests and
the app factory pass a `Settings` object around instead of reading this global.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import sys
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError as ConfigError  # the original name, kept importable here
from jsonlog import mask_url_password, url_passwords

#: The one list of secrets: masked in `repr(Settings)` (and `messaging check-config`), and fed
#: to the log redactor (`Settings.secret_values`), so no list can forget one.
SECRET_FIELDS = frozenset(
    {
        "BOT_TOKEN",
        "WEBHOOK_SECRET_TOKEN",
        "USER_SERVICE_API_KEY",
        "AGENT_SERVICE_API_KEY",
        "ADMIN_TOKEN",
        "DATABASE_URL",
        "FILES_SIGNING_KEY",
    }
)
#: URL-typed settings: not secret themselves, but a `user:password@` in them is.
URL_FIELDS = frozenset(
    {
        "USER_SERVICE_BASE",
        "AGENT_SERVICE_BASE",
        "TELEGRAM_API_BASE",
        "WEBHOOK_URL",
        "FILES_BASE_URL",
    }
)

_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BOT_TOKEN_RE = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{1,200}$")
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
#: The ports Telegram's `setWebhook` accepts (https://core.telegram.org/bots/api#setwebhook).
TELEGRAM_WEBHOOK_PORTS = (443, 80, 88, 8443)
#: The label of the derived webhook secret (`Settings.webhook_secret`). Changing it changes
#: every derived secret: the next start registers the new one with `setWebhook`.
WEBHOOK_SECRET_LABEL = b"messaging-gateway/webhook-secret/v1"

WebhookSecretSource = Literal["configured", "derived", "disabled"]


def _http_url(value: str, name: str) -> str:
    """An http(s) base URL with a host and a valid port; the message never quotes the value
    (a `user:password@` in it is a secret), and a malformed one fails here, not per request."""
    value = value.strip().rstrip("/")
    if not re.match(r"^https?://[^\s/]+", value) or re.search(r"\s", value):
        raise ValueError(f"{name} must be an http(s) URL")
    if not _parsed_url(value, name).host:
        raise ValueError(f"{name} must be an http(s) URL with a host")
    return value


def _parsed_url(value: str, name: str) -> httpx.URL:
    """`value` parsed, its port (if any) a real one; the message names `name`, never the value."""
    try:
        url = httpx.URL(value)
        port = url.port
    except (httpx.InvalidURL, ValueError):
        raise ValueError(f"{name} is not a valid URL (check the host and the port)") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{name}: the port must be between 1 and 65535")
    return url


def _webhook_url(value: str) -> str:
    """`WEBHOOK_URL` as any Bot API server takes it: http(s), a host, a valid port, no spaces.

    The messages never quote the value (it may carry a password in its userinfo). Telegram's
    own stricter rules (HTTPS, four ports) are checked in `Settings._derive`, because they
    depend on `TELEGRAM_API_BASE`: a local Bot API server or the sandbox takes plain http.
    """
    value = value.strip()
    if re.search(r"\s", value):
        raise ValueError("WEBHOOK_URL must not contain spaces")
    url = _parsed_url(value, "WEBHOOK_URL")
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            "WEBHOOK_URL must be an https:// URL with a host (http:// for a local Bot API server)"
        )
    return value


def derive_webhook_secret(bot_token: str) -> str:
    """The webhook secret every replica derives from the same bot token, when none is set.

    HMAC-SHA256 keyed by the token over a fixed label, in URL-safe base64 without padding: 43
    characters of Telegram's allowed alphabet (A-Z a-z 0-9 _ -). Whoever knows the token can
    compute it, but whoever knows the token can call `setWebhook` anyway; whoever does not
    cannot forge an update.
    """
    digest = hmac.new(bot_token.encode(), WEBHOOK_SECRET_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class Settings(BaseSettings):
    """Every knob of the gateway; the README's configuration table documents each one."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    # --- original specification -------------------------------------------------------------
    BOT_TOKEN: str
    WEBHOOK_SECRET_TOKEN: str | None = None
    USER_SERVICE_BASE: str
    AGENT_SERVICE_BASE: str | None = None
    REQUEST_TIMEOUT: float = Field(default=10, gt=0, le=300)
    LOG_LEVEL: str = "INFO"

    # --- services ----------------------------------------------------------------------------
    TELEGRAM_API_BASE: str = "https://api.telegram.org"
    USER_SERVICE_API_KEY: str | None = None
    AGENT_SERVICE_API_KEY: str | None = None
    AGENT_TIMEOUT: float | None = Field(default=None, gt=0, le=3600)
    HISTORY_CONTEXT_SIZE: int = Field(default=5, ge=0, le=50)

    # --- gateway state -------------------------------------------------------------------------
    DATABASE_URL: str = "sqlite:///./var/gateway.db"
    SQLITE_SYNCHRONOUS: Literal["FULL", "NORMAL"] = "FULL"
    #: PostgreSQL connections this process keeps open. Unset: `WORKER_CONCURRENCY` + 4 (each
    #: worker slot, the webhook's writer, delivery and the timers; 4 for an ingest-only role).
    #: A pool smaller than the work opens and closes a connection per check-out (TCP, start-up,
    #: authentication): measured, 0.55 new connections per update with 10 (+10) for 16 slots.
    DB_POOL_SIZE: int | None = Field(default=None, ge=1, le=1000)
    #: Connections opened beyond the pool at a peak, closed when returned. 0: a peak waits
    #: for a pooled connection, so the process never holds more than the pool (plus the send
    #: lane's 8 and the shared pace's 1), which is what a `max_connections` budget needs.
    DB_MAX_OVERFLOW: int = Field(default=0, ge=0, le=1000)
    INBOX_RETENTION_HOURS: float = Field(default=48, ge=24)
    #: Long button data (`callback_data` table) is kept this long; a button pressed later
    #: reaches the agent as its short key. At least a day, so today's buttons keep working.
    CALLBACK_DATA_RETENTION_DAYS: float = Field(default=30, ge=1, le=3650)
    MAX_BODY_BYTES: int = Field(default=1_048_576, ge=1024)
    #: Seconds a webhook request has to deliver its whole body (a slow sender holds memory
    #: and a connection; Telegram sends a few kilobytes at once).
    WEBHOOK_BODY_TIMEOUT: float = Field(default=10.0, gt=0, le=300)

    # --- webhook / admin -----------------------------------------------------------------------
    UPDATE_MODE: Literal["webhook", "polling"] = "webhook"
    WEBHOOK_URL: str | None = None
    WEBHOOK_SECRET_TOKEN_REQUIRED: bool = True
    ADMIN_TOKEN: str | None = None

    # --- workers -------------------------------------------------------------------------------
    # What this process does (`messaging serve --role`): `ingest` stores updates (webhook or
    # getUpdates) and processes nothing; `worker` processes the inbox and answers the webhook
    # with 503; `all` both. Ingest and workers scale apart on one PostgreSQL database.
    GATEWAY_ROLE: Literal["all", "ingest", "worker"] = "all"
    PROCESSING_ENABLED: bool = True
    WORKER_CONCURRENCY: int = Field(default=16, ge=1, le=1000)
    LEASE_SECONDS: float = Field(default=30, ge=1)
    POLL_INTERVAL: float = Field(default=0.5, gt=0, le=60)
    MAX_ATTEMPTS: int = Field(default=8, ge=1)
    RETRY_BASE_DELAY: float = Field(default=1.0, gt=0)
    RETRY_MAX_DELAY: float = Field(default=300.0, gt=0)
    SHUTDOWN_GRACE_SECONDS: float = Field(default=20.0, ge=0)
    RETRY_FLUSH_INTERVAL: float = Field(default=30.0, gt=0)
    TYPING_INTERVAL: float = Field(default=4.0, gt=0)

    # --- streamed replies ----------------------------------------------------------------------
    STREAM_MODE: Literal["edit", "draft", "off"] = "edit"
    STREAM_EDIT_INTERVAL: float = Field(default=1.0, ge=0.2, le=60)
    STREAM_GROUP_EDIT_INTERVAL: float = Field(default=3.0, ge=0.5, le=60)

    # --- outbound delivery (Telegram's limits) ----------------------------------------------
    RATE_GLOBAL_PER_SECOND: float = Field(default=30, gt=0)
    # On PostgreSQL the rate above is the whole bot's, shared by every replica; false: per process.
    RATE_GLOBAL_SHARED: bool = True
    RATE_CHAT_PER_SECOND: float = Field(default=1, gt=0)
    RATE_CHAT_BURST: int = Field(default=3, ge=1)
    RATE_GROUP_PER_MINUTE: float = Field(default=20, gt=0)
    SEND_MAX_ATTEMPTS: int = Field(default=6, ge=1)
    SEND_MAX_SECONDS: float = Field(default=300.0, gt=0)

    # --- conversation turns, groups, buttons, files (docs/turns.md) --------------------------
    TURN_MODE: Literal["queue", "collect", "interrupt"] = "collect"
    TURN_DEBOUNCE: float = Field(default=1.0, ge=0, le=60)
    TURN_MAX_WAIT: float = Field(default=5.0, ge=0, le=300)
    TURN_MAX_MESSAGES: int = Field(default=20, ge=1, le=100)
    ALBUM_GRACE: float = Field(default=1.0, ge=0, le=30)
    GROUP_REPLY: Literal["addressed", "all"] = "addressed"
    GROUP_TRIGGER_WORDS: str = ""
    BUTTON_FEEDBACK: Literal["mark", "remove", "keep"] = "mark"
    FILES_BASE_URL: str | None = None
    FILES_URL_TTL: float = Field(default=3600, ge=60, le=7 * 86400)
    FILES_SIGNING_KEY: str | None = None
    FILES_MAX_BYTES: int = Field(default=20 * 1024 * 1024, ge=1024)

    @field_validator("BOT_TOKEN")
    @classmethod
    def _check_bot_token(cls, value: str) -> str:
        if not _BOT_TOKEN_RE.match(value.strip()):
            raise ValueError("BOT_TOKEN must look like '<digits>:<letters, digits, _ or ->'")
        return value.strip()

    @field_validator(
        "WEBHOOK_SECRET_TOKEN",
        "USER_SERVICE_API_KEY",
        "AGENT_SERVICE_API_KEY",
        "ADMIN_TOKEN",
        "AGENT_SERVICE_BASE",
        "WEBHOOK_URL",
        "FILES_BASE_URL",
        "FILES_SIGNING_KEY",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("WEBHOOK_SECRET_TOKEN")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_TOKEN_RE.match(value):
            raise ValueError("WEBHOOK_SECRET_TOKEN must be 1-256 characters of A-Z a-z 0-9 _ -")
        return value

    @field_validator("USER_SERVICE_BASE")
    @classmethod
    def _check_user_base(cls, value: str) -> str:
        return _http_url(value, "USER_SERVICE_BASE")

    @field_validator("AGENT_SERVICE_BASE")
    @classmethod
    def _check_agent_base(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "AGENT_SERVICE_BASE")

    @field_validator("TELEGRAM_API_BASE")
    @classmethod
    def _check_tg_base(cls, value: str) -> str:
        return _http_url(value, "TELEGRAM_API_BASE")

    @field_validator("WEBHOOK_URL")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        return None if value is None else _webhook_url(value)

    @field_validator("FILES_BASE_URL")
    @classmethod
    def _check_files_base(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "FILES_BASE_URL")

    @field_validator("FILES_SIGNING_KEY")
    @classmethod
    def _check_signing_key(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("FILES_SIGNING_KEY must be at least 16 characters")
        return value

    @field_validator("GROUP_TRIGGER_WORDS")
    @classmethod
    def _check_triggers(cls, value: str) -> str:
        for word in value.split(","):
            if len(word.strip()) > 64:
                raise ValueError("GROUP_TRIGGER_WORDS: each word is at most 64 characters")
        return value

    @field_validator("LOG_LEVEL")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_db(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^(sqlite(\+aiosqlite)?:///|postgres(ql)?(\+asyncpg)?://)", value):
            raise ValueError("DATABASE_URL must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.AGENT_TIMEOUT is None:
            # The agent is the slow part of a reply (an LLM call); give it more room than the
            # quick User Service and Telegram calls, as the original specification advises.
            self.AGENT_TIMEOUT = max(30.0, self.REQUEST_TIMEOUT * 3)
        if self.RETRY_MAX_DELAY < self.RETRY_BASE_DELAY:
            raise ValueError("RETRY_MAX_DELAY must not be smaller than RETRY_BASE_DELAY")
        if self.WEBHOOK_URL and httpx.URL(self.TELEGRAM_API_BASE).host == "api.telegram.org":
            # Telegram refuses anything else with a 400 at `setWebhook`, retried forever at
            # start; saying so here stops a misconfigured deployment before it serves.
            url = httpx.URL(self.WEBHOOK_URL)
            if url.scheme != "https":
                raise ValueError("WEBHOOK_URL must be https:// (Telegram sends webhooks over TLS)")
            if (url.port or 443) not in TELEGRAM_WEBHOOK_PORTS:
                raise ValueError(
                    "WEBHOOK_URL: Telegram sends webhooks to port 443, 80, 88 or 8443 only"
                )
        return self

    @property
    def webhook_secret(self) -> str | None:
        """The secret the webhook requires and `setWebhook` registers; None = no check.

        `WEBHOOK_SECRET_TOKEN` when set; else, unless `WEBHOOK_SECRET_TOKEN_REQUIRED=false`,
        one derived from the bot token (`derive_webhook_secret`), so that a gateway configured
        without one never accepts forged updates and every replica agrees on the value.
        """
        if self.WEBHOOK_SECRET_TOKEN is not None:
            return self.WEBHOOK_SECRET_TOKEN
        if not self.WEBHOOK_SECRET_TOKEN_REQUIRED:
            return None
        return derive_webhook_secret(self.BOT_TOKEN)

    @property
    def webhook_secret_source(self) -> WebhookSecretSource:
        """Where `webhook_secret` comes from, for the start-up log (never the value)."""
        if self.WEBHOOK_SECRET_TOKEN is not None:
            return "configured"
        return "derived" if self.WEBHOOK_SECRET_TOKEN_REQUIRED else "disabled"

    @property
    def ingests(self) -> bool:
        """Whether this process takes updates in (webhook, getUpdates): not a worker-only one."""
        return self.GATEWAY_ROLE != "worker"

    @property
    def processes(self) -> bool:
        """Whether this process works the inbox and sends: not an ingest-only one (the role,
        or the older `PROCESSING_ENABLED=false`)."""
        return self.PROCESSING_ENABLED and self.GATEWAY_ROLE != "ingest"

    @property
    def db_pool_size(self) -> int:
        """`DB_POOL_SIZE`, else one connection per worker slot and 4 for the rest (an
        ingest-only process has no worker slots: its webhook writer, checks and admin)."""
        if self.DB_POOL_SIZE:
            return self.DB_POOL_SIZE
        return self.WORKER_CONCURRENCY + 4 if self.processes else 4

    @property
    def trigger_words(self) -> list[str]:
        """`GROUP_TRIGGER_WORDS` as a list (comma-separated; blanks dropped, case kept)."""
        return [w.strip() for w in self.GROUP_TRIGGER_WORDS.split(",") if w.strip()]

    @property
    def files_base_url(self) -> str:
        """Where the agent reaches `GET /files/{id}`: `FILES_BASE_URL`, else the origin of
        `WEBHOOK_URL`, else "" (relative URLs: the agent must know the gateway's address)."""
        if self.FILES_BASE_URL:
            return self.FILES_BASE_URL
        if self.WEBHOOK_URL:
            m = re.match(r"^(https?://[^/]+)", self.WEBHOOK_URL)
            if m:
                return m.group(1)
        return ""

    @property
    def agent_timeout(self) -> float:
        """`AGENT_TIMEOUT` after defaulting (never None once validated)."""
        assert self.AGENT_TIMEOUT is not None
        return self.AGENT_TIMEOUT

    def secret_values(self) -> list[str]:
        """Every secret value (and password in a URL) of this configuration, for the redactor."""
        values: list[str] = []
        for name in SECRET_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and value:
                values += [value, *url_passwords(value)]
        if self.webhook_secret is not None:
            values.append(self.webhook_secret)  # the derived one is as secret as a set one
        for name in URL_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                values += url_passwords(value)
        return values

    def __repr_args__(self) -> Any:
        # Never let a secret reach a log line through repr(settings).
        for name, value in super().__repr_args__():
            if name in SECRET_FIELDS and value is not None:
                yield name, "***"
            elif name in URL_FIELDS and isinstance(value, str):
                yield name, mask_url_password(value)
            else:
                yield name, value


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in err.get("loc", ())) or "configuration"
        kind = err.get("type", "")
        msg = "is required but not set" if kind == "missing" else str(err.get("msg", "is invalid"))
        msg = msg.removeprefix("Value error, ")
        lines.append(f"  {name}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings` from the environment, raising `ConfigError` with a secret-free message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_settings_or_exit(**overrides: Any) -> Settings:
    """For process entry points: print the problem to stderr and exit 2 instead of a traceback."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print(f"messaging-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a sqlite URL (None for PostgreSQL or in-memory)."""
    m = re.match(r"^sqlite(\+aiosqlite)?:///(.*)$", database_url)
    if not m or not m.group(2) or m.group(2) == ":memory:":
        return None
    return Path(m.group(2))


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, built on first use (exits with a clear message if invalid)."""
    global _settings
    if _settings is None:
        _settings = load_settings_or_exit()
    return _settings


def __getattr__(name: str) -> Any:
    if name == "settings":
        return get_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
