"""Sandbox settings, read from ``SANDBOX_*`` environment variables.

The defaults imitate Telegram closely enough for a client to hit the same walls (flood limits,
webhook retries, the 20 MB download limit) while keeping retry delays short, so that tests
finish in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TOKEN = "123456789:AAsandbox-token-for-local-development"  # noqa: S105 (a fake token)
TWENTY_MB = 20 * 1024 * 1024


class LimitSettings(BaseModel):
    """Flood-control knobs (token buckets). A rate of 0 disables that bucket.

    From the environment: ``SANDBOX_LIMITS__PER_CHAT_RATE=2`` etc. Sends, edits and drafts
    have separate buckets: Telegram counts edits apart from new messages, and far more
    strictly in groups (about 20 edits a minute).
    """

    model_config = ConfigDict(extra="forbid")

    per_chat_rate: float = 1.0
    per_chat_burst: float = 3.0
    global_rate: float = 30.0
    global_burst: float = 30.0
    group_rate_per_minute: float = 20.0
    group_burst: float = 20.0
    edit_per_chat_rate: float = 1.0
    edit_per_chat_burst: float = 5.0
    edit_group_rate_per_minute: float = 20.0
    edit_group_burst: float = 20.0
    draft_rate: float = 0.0
    draft_burst: float = 10.0
    tolerance: float = 0.05


def _split(value: Any) -> Any:
    """``"a,b"`` or ``'["a", "b"]'`` from the environment; lists pass through."""
    if isinstance(value, str):
        text = value.strip().strip("[]")
        return [v.strip().strip("\"'") for v in text.split(",") if v.strip()]
    return value


class SandboxConfig(BaseSettings):
    """Everything the sandbox needs to start; ``create_app`` takes one of these."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", env_nested_delimiter="__")

    bot_token: str = DEFAULT_TOKEN
    bot_first_name: str = "Sandbox Bot"
    bot_username: str = "sandbox_bot"
    # Seconds to wait before retry n (the last value repeats). Telegram backs off too, only slower.
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.1, 0.25, 0.5, 1.0, 2.0]
    )
    # 0 = keep retrying until the receiver acknowledges (tests want "eventually delivered").
    webhook_max_attempts: int = 0
    webhook_timeout: float = 10.0
    max_long_poll: float = 50.0
    typing_seconds: float = 5.0
    first_update_id: int = 100_000_001
    limits: LimitSettings = Field(default_factory=LimitSettings)
    # Host names (besides 127.0.0.1, localhost and ::1) the sandbox answers to; "*" = any.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Browser origins (besides same-origin and loopback ones) allowed to drive it; "*" = any.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where uploaded file content is kept (0700 folder, 0600 files); unset = a private temp dir.
    state_dir: Path | None = None
    # A draft not refreshed for this long is gone (Telegram: a 30-second preview).
    draft_ttl: float = 30.0
    # getFile refuses larger files, as the real Bot API does for bots.
    max_download_size: int = TWENTY_MB

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        """Accept ``"0.1,0.5,1"`` or a JSON list from the environment."""
        split = _split(value)
        return [float(v) for v in split] if isinstance(split, list) else split

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return _split(value)

    @property
    def bot_id(self) -> int:
        """The numeric prefix of the token is the bot's user id, as on Telegram."""
        head = self.bot_token.split(":", 1)[0]
        return int(head) if head.isdigit() else 123456789
