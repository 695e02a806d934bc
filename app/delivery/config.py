"""`DeliveryConfig`: the knobs of the delivery engine, as one value built from `Settings`.

The engine needs Telegram's limits, its lease and timing, and nothing else of the gateway's
configuration; with its own value, the engine and its tests need no User Service URL or bot
token to exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings


@dataclass(frozen=True)
class DeliveryConfig:
    lease_seconds: float = 30.0
    poll_interval: float = 0.5
    request_timeout: float = 10.0
    typing_interval: float = 4.0
    rate_global_per_second: float = 30.0
    #: Sends the bot-wide pacer lets go back to back after an idle moment (then 1/rate apart).
    #: Two, not more: answers that arrive together are each in their crash window at once.
    global_burst: int = 2
    #: The bot's id (the digits of its token before ':'): the key of the bot-wide pace that
    #: replicas share on PostgreSQL. Not a secret (it is in every update about the bot).
    bot_id: str = "bot"
    #: On PostgreSQL, pace the bot across every replica (`pacing.SharedPacer`); False paces
    #: each process alone (SQLite always does: one process).
    shared_pacing: bool = True
    rate_chat_per_second: float = 1.0
    rate_chat_burst: int = 3
    rate_group_per_minute: float = 20.0
    send_max_attempts: int = 6
    send_max_seconds: float = 300.0
    retry_base_delay: float = 1.0
    retry_max_delay: float = 300.0
    #: How many chats one process holds at once (each costs one head part in memory).
    max_active_chats: int = 1000
    #: Concurrent HTTP sends (across chats; one per chat at most).
    max_in_flight: int = 64

    @classmethod
    def from_settings(cls, s: Settings) -> DeliveryConfig:
        return cls(
            lease_seconds=s.LEASE_SECONDS,
            poll_interval=s.POLL_INTERVAL,
            request_timeout=s.REQUEST_TIMEOUT,
            typing_interval=s.TYPING_INTERVAL,
            rate_global_per_second=s.RATE_GLOBAL_PER_SECOND,
            bot_id=s.BOT_TOKEN.split(":", 1)[0],
            shared_pacing=s.RATE_GLOBAL_SHARED,
            rate_chat_per_second=s.RATE_CHAT_PER_SECOND,
            rate_chat_burst=s.RATE_CHAT_BURST,
            rate_group_per_minute=s.RATE_GROUP_PER_MINUTE,
            send_max_attempts=s.SEND_MAX_ATTEMPTS,
            send_max_seconds=s.SEND_MAX_SECONDS,
            retry_base_delay=s.RETRY_BASE_DELAY,
            retry_max_delay=s.RETRY_MAX_DELAY,
        )

    @property
    def hook_lease(self) -> float:
        """Long enough for a hook's calls (a lookup and a write) to time out inside it."""
        return self.lease_seconds + 3 * self.request_timeout
