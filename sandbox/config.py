"""Sandbox settings, read from ``SANDBOX_*`` environment variables.

The defaults imitate Telegram closely enough for a client to hit the same walls (flood limits,
webhook retries) while keeping retry delays short, so that tests finish in seconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TOKEN = "123456789:AAsandbox-token-for-local-development"  # noqa: S105 (a fake token)


class LimitSettings(BaseModel):
    """Flood-control knobs (token buckets). A rate of 0 disables that bucket.

    From the environment: ``SANDBOX_LIMITS__PER_CHAT_RATE=2`` etc.
    """

    model_config = ConfigDict(extra="forbid")

    per_chat_rate: float = 1.0
    per_chat_burst: float = 3.0
    global_rate: float = 30.0
    global_burst: float = 30.0
    group_rate_per_minute: float = 20.0
    group_burst: float = 20.0
    tolerance: float = 0.05


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

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        """Accept ``"0.1,0.5,1"`` or a JSON list from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return [float(v) for v in text.strip("[]").split(",") if v.strip()]
            return [float(v) for v in text.split(",") if v.strip()]
        return value

    @property
    def bot_id(self) -> int:
        """The numeric prefix of the token is the bot's user id, as on Telegram."""
        head = self.bot_token.split(":", 1)[0]
        return int(head) if head.isdigit() else 123456789
