"""The `demo` backend: offline and deterministic, built to show off what the gateway does.

Each answer exercises one gateway feature, so `messaging dev` demonstrates all of them with no
model: buttons with callback data (one longer than Telegram's 64 bytes) and a URL button, a
reply too long for one Telegram message, a reply streamed word by word, a reply that quotes the
history, turns made of several messages, media, and an overloaded agent. The keywords are
listed by /help and in docs/agent-service.md; tests pin the exact behaviour.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from agent_service.backends.base import Delta, Event, Final, UpstreamBusy
from agent_service.schemas import RespondIn

#: A button whose data is longer than Telegram's 64-byte callback_data limit: the gateway keeps
#: it server-side behind a short key and hands the full value back when it is pressed.
LONG_DATA = "demo:echo:" + "this callback data is longer than Telegram's 64-byte limit"
LONG_REPLY_PARAGRAPHS = 40
#: Keywords count in short messages only, so a sentence that merely contains "long" is echoed.
KEYWORD_MAX_WORDS = 6

BUTTONS: list[dict[str, Any]] = [
    {"text": "👍 Yes", "data": "answer:yes", "row": 1},
    {"text": "👎 No", "data": "answer:no", "row": 1},
    {"text": "Long reply", "data": "demo:long", "row": 2},
    {"text": "Stream a story", "data": "demo:stream", "row": 2},
    {"text": "Long data", "data": LONG_DATA, "row": 3},
    {"text": "Telegram Bot API", "url": "https://core.telegram.org/bots/api", "row": 3},
]

HELP = """I'm the demo agent: no model, every answer shows off something the gateway does.

/buttons (or "buttons", "menu") — a reply with buttons: callback data, a URL, data over 64 bytes
/long (or "long") — a reply longer than Telegram's 4096 characters, sent in parts
/stream (or "story") — a story, streamed word by word when the gateway asks for a stream
/remember (or "what did I say first?") — quotes the first message of the history I was given
/busy — answers 503 "overloaded", so you see the gateway's busy message
/new — a new conversation: the gateway stops sending me what came before
/help — this list

Send a photo, a voice message or a sticker and I'll tell you what I was told about it;
send several messages at once and I'll list the parts of the turn."""

STORY = (
    "Once upon a time a message left a phone in Hanoi. The gateway caught it in a few "
    "milliseconds, wrote it down where no crash could lose it, and told Telegram all was well. "
    "Then, one chat at a time and in order, it found the sender, remembered the message in "
    "the history, asked the agent what to say, and carried the answer back, never faster than "
    "Telegram allows and never twice. The end."
)

_MEDIA = re.compile(r"^\[(?P<kind>[a-z_]+)(?: (?P<rest>.*))?\]$", re.DOTALL)
_REMEMBER = re.compile(r"\bremember\b|what did i (say|write) first|\bfirst message\b", re.I)


def _words(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"\b({pattern})\b", re.IGNORECASE)


_KEYWORDS: list[tuple[re.Pattern[str], str]] = [
    (_REMEMBER, "/remember"),
    (_words("buttons?|menu"), "/buttons"),
    (_words("long"), "/long"),
    (_words("stream|story"), "/stream"),
]
_DATA_COMMANDS = {
    "demo:long": "/long",
    "demo:stream": "/stream",
    "demo:buttons": "/buttons",
    "demo:remember": "/remember",
    "demo:help": "/help",
}


def long_reply() -> str:
    lines = [
        "This reply is longer than the 4096 characters Telegram allows in one message, so the "
        "gateway splits it at paragraph boundaries and sends the parts in order, each exactly "
        "once, within the chat's rate limit."
    ]
    for i in range(1, LONG_REPLY_PARAGRAPHS + 1):
        lines.append(
            f"{i}. Paragraph {i} of {LONG_REPLY_PARAGRAPHS}. A durable inbox, one chat at a "
            "time, an outbox that honours retry_after: every part of this text travels the "
            "same path as a short answer would, and a crash half-way resumes where it stopped "
            "instead of sending a part twice."
        )
    lines.append("The end of the long reply.")
    return "\n\n".join(lines)


def _name(user: dict[str, Any]) -> str:
    for key in ("full_name", "first_name", "name"):
        value = user.get(key)
        if isinstance(value, str) and value.strip():
            return " " + value.strip()
    return ""


def _command(request: RespondIn) -> str | None:
    if request.command:
        return request.command.split("@", 1)[0].lower()
    word = request.text.strip().split(maxsplit=1)
    if word and word[0].startswith("/"):
        return word[0].split("@", 1)[0].lower()
    return None


def _size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} kB"
    return f"{n / (1024 * 1024):.1f} MB"


def describe_attachment(a: Any) -> str:
    facts = [a.mime_type, _size(a.size)]
    if a.width and a.height:
        facts.append(f"{a.width}×{a.height}")
    if a.duration is not None:
        facts.append(f"{a.duration}s")
    if a.file_name:
        facts.append(a.file_name)
    text = f"a {a.kind}" + (f" ({', '.join(f for f in facts if f)})" if any(facts) else "")
    if a.caption:
        text += f" captioned “{a.caption}”"
    return text


class DemoBackend:
    name = "demo"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def answer(self, request: RespondIn, *, stream: bool) -> AsyncIterator[Event]:
        reply, actions = self.compose(request)
        if stream:
            for i, piece in enumerate(re.findall(r"\s*\S+", reply)):
                if i and self.delay:
                    await asyncio.sleep(self.delay)
                yield Delta(piece)
            tail = reply[len(reply.rstrip()) :]
            if tail:
                yield Delta(tail)
        yield Final(reply, actions)

    # --- what to say ---------------------------------------------------------------------------
    def compose(self, request: RespondIn) -> tuple[str, list[Any]]:
        """The reply and its buttons for one turn (raises UpstreamBusy for /busy)."""
        text = request.text.strip()
        if request.kind == "callback_query":
            command = _DATA_COMMANDS.get(text)
            if command is None:
                return self.pressed(text), []
        else:
            command = _command(request)
        if (
            command is None
            and not request.attachments
            and len(request.parts) < 2
            and len(text.split()) <= KEYWORD_MAX_WORDS  # "how long is it?" is not a request
        ):
            command = next((cmd for pattern, cmd in _KEYWORDS if pattern.search(text)), None)
        handler = self._commands.get(command) if command else None
        if handler is not None:
            return handler(self, request)
        if command is not None:
            return f"Sorry, I don't know {command}.\n\n{HELP}", []
        if request.attachments:
            seen = "; ".join(describe_attachment(a) for a in request.attachments)
            return (
                f"You sent {seen}. I can't look inside files, but the gateway told me this much.",
                [],
            )
        if len(request.parts) > 1:
            lines = [f"{i}. {p.text or '(no text)'}" for i, p in enumerate(request.parts, 1)]
            return (
                f"You sent {len(request.parts)} messages as one turn:\n" + "\n".join(lines),
                [],
            )
        media = _MEDIA.match(text)
        if media:
            kind = media.group("kind").replace("_", " ")
            rest = f" ({media.group('rest')})" if media.group("rest") else ""
            return f"You sent a {kind}{rest}. I can't look inside it, but I know it's there.", []
        if not text:
            return "I got your message, but there is no text in it I can read. Try /help.", []
        return f"You said: {text}\n\nSend /help to see what this demo agent can do.", []

    def pressed(self, data: str) -> str:
        note = ""
        if len(data.encode()) > 64:
            note = (
                f" It is {len(data.encode())} bytes, more than Telegram's 64-byte limit: the"
                " gateway kept it for me and handed it back whole."
            )
        return f"You pressed a button; its data was “{data}”.{note}"

    def start_(self, request: RespondIn) -> tuple[str, list[Any]]:
        return f"Hello{_name(request.user)}!\n\n{HELP}", BUTTONS

    def help_(self, request: RespondIn) -> tuple[str, list[Any]]:
        return HELP, []

    def buttons(self, request: RespondIn) -> tuple[str, list[Any]]:
        return "Pick one: each button comes back to me as the next turn.", BUTTONS

    def long(self, request: RespondIn) -> tuple[str, list[Any]]:
        return long_reply(), []

    def story(self, request: RespondIn) -> tuple[str, list[Any]]:
        return STORY, []

    def remember(self, request: RespondIn) -> tuple[str, list[Any]]:
        said = [h.text.strip() for h in request.history if h.direction == "in" and h.text]
        said = [s for s in said if s]
        if not said:
            return "You haven't said anything before this (or the gateway sent me no history).", []
        return (
            f"The first thing you said, as far back as my history goes "
            f"({len(request.history)} earlier messages), was: “{said[0]}”",
            [],
        )

    def new(self, request: RespondIn) -> tuple[str, list[Any]]:
        return "A new conversation: I only see what you say from now on.", []

    def busy(self, request: RespondIn) -> tuple[str, list[Any]]:
        raise UpstreamBusy("the demo agent was asked to be busy (/busy)", retry_after=1)

    _commands: ClassVar[dict[str, Callable[[DemoBackend, RespondIn], tuple[str, list[Any]]]]] = {
        "/start": start_,
        "/help": help_,
        "/buttons": buttons,
        "/long": long,
        "/stream": story,
        "/remember": remember,
        "/busy": busy,
        "/new": new,
        "/reset": new,
    }
