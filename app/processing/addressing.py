"""Who the bot is, and whether a group message is meant for it.

In a private chat everything is for the bot. In a group or supergroup people talk to each
other, and a bot that answers every line is a bot that gets removed; so with
`GROUP_REPLY=addressed` (the default) the bot answers only:

- a command (``/help``, or ``/help@ThisBot``; ``/help@OtherBot`` is not for us),
- a reply to one of its own messages,
- an ``@mention`` of its username (or a ``text_mention`` of it, for bots without a username),
- a configured trigger word (``GROUP_TRIGGER_WORDS``, whole words, case-insensitive).

The rest is recorded in the history (the agent sees it as context) and not answered. The
mention itself is stripped from the text the agent gets ("@bot what time is it" → "what time is
it"); the history keeps what was written.

The bot's id and username come from `getMe`, asked once and cached (`BotIdentity`); until it
answers, a group message cannot be judged, and its update waits like any other outage.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Literal

from app.errors import TelegramClientError
from app.logger import get_logger
from app.telegram_client import TelegramClient
from app.utils import ParsedUpdate, message_of

log = get_logger(__name__)

GROUP_TYPES = frozenset({"group", "supergroup"})
#: Why a message is answered: a private chat, GROUP_REPLY=all, or how a group message addressed
#: the bot ("album": another item of its album did). None (from `GroupAddressing.reason`)
#: means: not addressed, record only.
Reason = Literal["private", "all", "command", "reply", "mention", "trigger", "album"]


@dataclass(frozen=True)
class BotUser:
    id: int
    username: str | None
    first_name: str


class BotIdentity:
    """`getMe`, once: the bot's id and username (what mentions and replies are matched on)."""

    def __init__(self, telegram: TelegramClient) -> None:
        self.telegram = telegram
        self._me: BotUser | None = None
        self._lock = asyncio.Lock()

    @property
    def known(self) -> BotUser | None:
        return self._me

    def set(self, me: BotUser) -> None:
        """For tests and for a caller that already asked."""
        self._me = me

    async def get(self) -> BotUser:
        """The bot's user; raises `TelegramClientError` (an outage, usually) if Telegram fails."""
        if self._me is not None:
            return self._me
        async with self._lock:
            if self._me is None:
                result = (await self.telegram.get_me()).get("result")
                me = result if isinstance(result, dict) else {}
                bot_id = me.get("id")
                if not isinstance(bot_id, int) or isinstance(bot_id, bool):
                    raise TelegramClientError("getMe", description="getMe returned no bot id")
                username = me.get("username")
                self._me = BotUser(
                    bot_id,
                    username if isinstance(username, str) and username else None,
                    str(me.get("first_name") or ""),
                )
                log.info("bot identity known", extra={"bot_id": bot_id, "username": username})
            return self._me


def is_group(parsed: ParsedUpdate) -> bool:
    chat = parsed["chat"] or {}
    return chat.get("type") in GROUP_TYPES


def _words_pattern(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _mention_pattern(username: str) -> re.Pattern[str]:
    # "@bot", "@bot," or "@bot:" and the space after it; not "x@bot.com" or "@botty".
    return re.compile(rf"(?<![\w@])@{re.escape(username)}(?!\w)[,:]?\s*", re.IGNORECASE)


def _text_mentions(msg: dict[str, Any], bot_id: int) -> bool:
    for key in ("entities", "caption_entities"):
        entities = msg.get(key)
        if not isinstance(entities, list):
            continue
        for entity in entities:
            if not isinstance(entity, dict) or entity.get("type") != "text_mention":
                continue
            user = entity.get("user")
            if isinstance(user, dict) and user.get("id") == bot_id:
                return True
    return False


class GroupAddressing:
    """`GROUP_REPLY` and `GROUP_TRIGGER_WORDS` applied to a parsed update."""

    def __init__(
        self,
        identity: BotIdentity,
        *,
        mode: Literal["addressed", "all"] = "addressed",
        trigger_words: list[str] | None = None,
    ) -> None:
        self.identity = identity
        self.mode = mode
        self.triggers = _words_pattern(list(trigger_words or []))

    async def reason(self, parsed: ParsedUpdate) -> Reason | None:
        """Why the bot answers this update, or None: a group message not meant for it."""
        if not is_group(parsed):
            return "private"
        if parsed["kind"] == "callback_query":
            return "command"  # a press on the bot's own button is always for the bot
        if self.mode == "all":
            return "all"
        me = await self.identity.get()
        if parsed["command"] is not None:
            target = parsed["command_bot"]
            if target is None or (me.username and target.lower() == me.username.lower()):
                return "command"
            return None  # /cmd@OtherBot
        msg = message_of(parsed["raw"])
        replied = msg.get("reply_to_message")
        if isinstance(replied, dict):
            sender = replied.get("from")
            if isinstance(sender, dict) and sender.get("id") == me.id:
                return "reply"
        text = parsed["text"]
        if me.username and _mention_pattern(me.username).search(text):
            return "mention"
        if _text_mentions(msg, me.id):
            return "mention"
        if self.triggers is not None and self.triggers.search(text):
            return "trigger"
        return None

    def agent_text(self, parsed: ParsedUpdate, text: str) -> str:
        """`text` as the agent should see it: in groups, without the bot's @mention."""
        me = self.identity.known
        if not is_group(parsed) or me is None or not me.username:
            return text
        stripped = _mention_pattern(me.username).sub("", text).strip()
        return stripped or text.strip()
