"""What the delivery engine needs from the Telegram client (`app.telegram_client.TelegramClient`
implements it; tests hand in stand-ins)."""

from __future__ import annotations

from typing import Any, Protocol


class TelegramAPI(Protocol):
    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the client's interface
    ) -> dict[str, Any]: ...
