"""'typing…' while the agent works: `sendChatAction` every few seconds, best effort.

A chat action is not a message, so it spends none of the message budget; but it is not sent
while the chat (or the bot) is in a flood wait, nor to a chat known to be unreachable, and a
failure is never anyone's problem (logged at debug).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.delivery.config import DeliveryConfig
from app.delivery.ports import TelegramAPI
from app.logger import get_logger

log = get_logger(__name__)


class ChatActions:
    def __init__(
        self,
        telegram: TelegramAPI,
        config: DeliveryConfig,
        *,
        quiet: Callable[[int], bool],
    ) -> None:
        self.telegram = telegram
        self.config = config
        self._quiet = quiet  # True: do not bother this chat now (flood wait, unreachable)

    @contextlib.asynccontextmanager
    async def typing(
        self, chat_id: int, business_connection_id: str | None = None
    ) -> AsyncIterator[None]:
        """Show "typing..." in the chat while the block runs (never raises)."""
        params: dict[str, Any] = {"chat_id": chat_id, "action": "typing"}
        if business_connection_id:
            params["business_connection_id"] = business_connection_id
        task = asyncio.create_task(self._loop(chat_id, params), name=f"typing-{chat_id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self, chat_id: int, params: dict[str, Any]) -> None:
        interval = self.config.typing_interval
        while True:
            if not self._quiet(chat_id):
                try:
                    await self.telegram.call(
                        "sendChatAction",
                        params,
                        timeout=min(interval, self.config.request_timeout),
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("typing failed", extra={"chat_id": chat_id, "error": repr(exc)})
            await asyncio.sleep(interval)
