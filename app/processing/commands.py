"""The bot's commands: what `/new` means, and what the gateway publishes with `setMyCommands`.

`/new` (alias `/reset`) starts a fresh context: the agent is no longer sent the history before
it. Nothing is deleted: the command is an inbound history row like any other, and
`History.context` stops at the newest such row, so the cut survives restarts and replicas and
needs no state of its own. `/start` and `/help` go to the agent as before.

`publish_commands` runs at start (retried until Telegram answers): the list is the built-in
fallback's (`app.agent_client.FALLBACK_COMMANDS`), the one place commands are declared.
"""

from __future__ import annotations

from typing import Any

from app.agent_client import FALLBACK_COMMANDS
from app.telegram_client import TelegramClient

#: Commands after which the agent gets no earlier history.
NEW_CONTEXT_COMMANDS = frozenset({"/new", "/reset"})


def bot_commands() -> list[dict[str, str]]:
    """`BotCommand` objects for `setMyCommands` (names without the slash, as Telegram wants)."""
    return [
        {"command": name.lstrip("/"), "description": what[:256]}
        for name, what in FALLBACK_COMMANDS.items()
    ]


async def publish_commands(telegram: TelegramClient) -> dict[str, Any]:
    return await telegram.call("setMyCommands", {"commands": bot_commands()})
