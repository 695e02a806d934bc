"""Configuration of the Agent Service, read from the environment.

Every problem stops the process at start with exit code 2 and a message naming the variable,
never its value: `OPENAI_API_KEY` is a secret, and `OPENAI_BASE_URL` may carry a password in
its userinfo, so neither may reach a terminal, a log line or a CI transcript.

The names avoid the gateway's own (`AGENT_TIMEOUT`, `API_KEY`...) because `messaging dev` runs
every service with the same environment; `AGENT_SERVICE_API_KEY` is shared on purpose: the
gateway sends it, the agent service checks it, so one `.env` configures both sides.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Backend = Literal["demo", "openai", "local"]

OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant answering people on Telegram. Keep answers short and plain: "
    "no Markdown tables. When offering the person a choice, call the show_buttons tool."
)
#: Secret-bearing fields: kept out of repr() and so out of any log line that prints settings.
SECRET_FIELDS = frozenset({"AGENT_SERVICE_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"})


def check_http_url(value: str) -> str:
    """The URL if it is http(s) with a host; ValueError (never quoting it) otherwise."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise ValueError("must be an http:// or https:// URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL")
    return value


def redact_url(value: str) -> str:
    """The URL with any userinfo (user:password@) replaced, for log lines."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        return "***"
    if url.userinfo:
        return str(url.copy_with(username="***", password=None))
    return value


class Settings(BaseSettings):
    """Environment variables; see the table in docs/agent-service.md."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    AGENT_BACKEND: Backend = "demo"
    AGENT_SERVICE_API_KEY: SecretStr | None = None

    OPENAI_BASE_URL: str = Field(default=OPENAI_DEFAULT_BASE, repr=False)
    OPENAI_API_KEY: SecretStr | None = None
    AGENT_MODEL: str = Field(default="gpt-4o-mini", min_length=1)
    AGENT_SYSTEM_PROMPT: str = DEFAULT_SYSTEM_PROMPT
    AGENT_TEMPERATURE: float | None = Field(default=None, ge=0, le=2)
    AGENT_MAX_TOKENS: int = Field(default=512, ge=0, le=1_000_000)
    AGENT_HISTORY_BUDGET: int = Field(default=6000, ge=0, le=10_000_000)
    AGENT_TOOLS: bool = True
    AGENT_EXTRA_BODY: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)
    AGENT_UPSTREAM_TIMEOUT: float = Field(default=25.0, gt=0, le=3600)

    AGENT_DEMO_DELAY: float = Field(default=0.03, ge=0, le=5)

    AGENT_LOCAL_MODEL_PATH: Path | None = None
    AGENT_LOCAL_PORT: int = Field(default=0, ge=0, le=65535)
    AGENT_LOCAL_THREADS: int | None = Field(default=None, ge=1, le=256)
    AGENT_LOCAL_CONTEXT: int = Field(default=2048, ge=256, le=131072)
    AGENT_LOCAL_START_TIMEOUT: float = Field(default=120.0, gt=0, le=3600)

    AGENT_MAX_BODY_BYTES: int = Field(default=1_048_576, ge=1024)
    LOG_LEVEL: str = "INFO"

    @field_validator("OPENAI_BASE_URL")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("AGENT_SERVICE_API_KEY", "OPENAI_API_KEY")
    @classmethod
    def _empty_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty value means "no key", so a harness can switch a key off with `NAME=`.
        if value is not None and not value.get_secret_value():
            return None
        return value

    @field_validator(
        "AGENT_TEMPERATURE", "AGENT_LOCAL_THREADS", "AGENT_LOCAL_MODEL_PATH", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("AGENT_EXTRA_BODY", mode="before")
    @classmethod
    def _parse_extra(cls, value: Any) -> Any:
        if value in ("", None):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return value

    @field_validator("LOG_LEVEL")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _check_backend(self) -> Settings:
        if (
            self.AGENT_BACKEND == "openai"
            and httpx.URL(self.OPENAI_BASE_URL).host == "api.openai.com"
            and self.OPENAI_API_KEY is None
        ):
            raise ValueError(
                "OPENAI_API_KEY is required when OPENAI_BASE_URL is OpenAI's API"
                " (point OPENAI_BASE_URL at your own server to go without a key)"
            )
        return self

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, ("***" if name in SECRET_FIELDS and value is not None else value)

    def secrets(self) -> list[str]:
        """Values that must never appear in output: keys, and a password in the base URL."""
        found = [
            s.get_secret_value() for s in (self.AGENT_SERVICE_API_KEY, self.OPENAI_API_KEY) if s
        ]
        url = httpx.URL(self.OPENAI_BASE_URL)
        if url.password:
            found.append(url.password)
        if url.userinfo:
            found.append(url.userinfo.decode("ascii", "replace"))
        return found


class ConfigError(Exception):
    """Configuration is missing or invalid; the message names variables, never their values."""


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        name = ".".join(str(part) for part in err.get("loc", ()))
        kind = err.get("type", "")
        msg = "is required but not set" if kind == "missing" else str(err.get("msg", "is invalid"))
        msg = msg.removeprefix("Value error, ")
        lines.append(f"  {name}: {msg}" if name else f"  {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, or `ConfigError` with a secret-free message."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    if settings.AGENT_BACKEND == "local":
        from agent_service.local import missing_reason

        reason = missing_reason(settings.AGENT_LOCAL_MODEL_PATH)
        if reason is not None:
            raise ConfigError(f"invalid configuration:\n  AGENT_BACKEND=local: {reason}")
    return settings


def load_settings_or_exit(**overrides: Any) -> Settings:
    """For process entry points: the problem on stderr and exit 2, instead of a traceback."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print(f"agent-service: {exc}", file=sys.stderr)
        logging.shutdown()
        raise SystemExit(2) from None
