"""Conversation turns: the messages one agent call answers.

People write "hi", "one question", "how do I reset my password?" in three messages, send an
album of six photos as six updates, add a comment after a forward. A *turn* is what the agent
answers once: the head of the chat (the oldest unfinished update, as `Inbox.claim` hands it
out) plus the updates queued behind it that belong with it. What belongs (`TurnConfig`):

- `TURN_MODE=queue`: one turn per message, as before; only an album is merged.
- `collect` (default): the messages from the same sender waiting behind the head are merged
  into its turn, in order, up to the first one that is not a plain message (a command, a
  button press, an edit, another sender) and at most `TURN_MAX_MESSAGES`. With
  `TURN_DEBOUNCE` > 0 the head also waits until the chat has been quiet that long (at most
  `TURN_MAX_WAIT` after the head arrived), so a burst typed in a few seconds is one turn;
  messages that arrive while a turn is with the agent form the next turn together.
- `interrupt`: as `collect`, and a message arriving while the turn is with the agent cancels
  that call (`Cancellations`, in this process); the turn takes the new message in and asks again.
- Albums (a shared `media_group_id`) are one turn in every mode, whatever the order and
  spacing Telegram delivers the items in: the head waits `ALBUM_GRACE` after the newest item.

Guarantees, per message and per turn:

- **Each message keeps its own inbound history row, written once.** The followers' update ids
  are saved in the head's step record (`progress.turn.members`) *before* any of their rows is
  written, so a row can only exist for a listed member, and a resumed turn looks for its own
  rows (by update id) before writing: a kill -9 between a write and its record writes nothing
  twice. A member recorded by someone else (a gateway that lost its database) is a duplicate:
  left out of the turn.
- **One agent call and one reply per turn.** The reply is the head's (`reply:<head update
  id>`, stable across crashes); once the agent's answer is saved the membership is final.
- **Order.** Followers cannot be claimed while their head is pending (`Inbox.claim` hands out
  heads only), so no lease is needed for them; they are marked done right after the reply is
  queued and before the head is, so none of them ever becomes a head and is answered again.
- **Waiting holds nothing.** A turn that should wait for more messages gives its head back to
  the inbox with a due time (`Inbox.defer`) and the dispatcher moves on; other chats and other
  replicas are not held up, and the wait survives a restart.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from app.logger import get_logger
from app.processing.cancel import Cancellations
from app.processing.files import FileLinks, attachments_of
from app.processing.history import History
from app.processing.progress import StepRecord, TurnRecord
from app.storage.inbox import Inbox, InboxItem, NewUpdate
from app.utils import ParsedUpdate, message_key, message_of, parse_update

log = get_logger(__name__)

Mode = Literal["queue", "collect", "interrupt"]
#: Kinds that can lead or join a turn (a message of a private chat, a group, a business chat).
TURN_KINDS = frozenset({"message", "business_message"})
#: Telegram's album limit: a complete album needs no grace window.
ALBUM_MAX = 10
INTERRUPT = "interrupt"


@dataclass(frozen=True)
class TurnConfig:
    mode: Mode = "collect"
    debounce: float = 0.0
    max_wait: float = 5.0
    max_messages: int = 20
    album_grace: float = 0.0

    @classmethod
    def from_settings(cls, settings: Any) -> TurnConfig:
        return cls(
            mode=settings.TURN_MODE,
            debounce=settings.TURN_DEBOUNCE,
            max_wait=settings.TURN_MAX_WAIT,
            max_messages=settings.TURN_MAX_MESSAGES,
            album_grace=settings.ALBUM_GRACE,
        )


@dataclass
class Member:
    """One update of a turn and the text the agent sees for it."""

    item: InboxItem
    parsed: ParsedUpdate
    text: str

    @property
    def update_id(self) -> int:
        return self.item.update_id


@dataclass
class Turn:
    head: Member
    followers: list[Member] = field(default_factory=list)
    #: The agent has answered: membership is final, nothing more is collected.
    sealed: bool = False

    @property
    def members(self) -> list[Member]:
        """Head and followers in the order they were written (message ids rise in a chat;
        arrival order when an id is 0 or missing)."""
        everyone = [self.head, *self.followers]
        if all(m.parsed["message_id"] for m in everyone):
            return sorted(everyone, key=lambda m: (m.parsed["message_id"] or 0, m.update_id))
        return everyone

    @property
    def update_ids(self) -> list[int]:
        return [m.update_id for m in self.members]


@dataclass(frozen=True)
class Wait:
    """Not yet: claim the head again at `until` (epoch seconds)."""

    until: float


def _same_sender(a: ParsedUpdate, b: ParsedUpdate) -> bool:
    return (
        a["telegram_id"] == b["telegram_id"]
        and a["chat_id"] == b["chat_id"]
        and a["business_connection_id"] == b["business_connection_id"]
    )


def leads(parsed: ParsedUpdate) -> bool:
    """Whether this update can gather others into its turn (a plain message, not a command)."""
    return parsed["kind"] in TURN_KINDS and not parsed["is_command"]


def joins(head: ParsedUpdate, other: ParsedUpdate) -> bool:
    """Whether `other`, queued behind `head`, belongs to head's turn (collect, interrupt)."""
    return (
        other["kind"] == head["kind"]
        and other["kind"] in TURN_KINDS
        and not other["is_command"]
        and _same_sender(head, other)
    )


def _has_own_text(parsed: ParsedUpdate) -> bool:
    msg = message_of(parsed["raw"])
    return any(isinstance(msg.get(k), str) and msg.get(k) for k in ("text", "caption"))


class Turns:
    """Assembles turns for the pipeline (see the module docstring)."""

    def __init__(
        self,
        inbox: Inbox,
        history: History,
        *,
        files: FileLinks,
        cancellations: Cancellations | None = None,
        config: TurnConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.history = history
        self.files = files
        self.cancellations = cancellations or Cancellations()
        self.config = config or TurnConfig()
        self.clock = clock
        #: chat key -> the head of the turn whose agent call may be interrupted right now.
        self._asking: dict[str, ParsedUpdate] = {}

    # --- assembling -------------------------------------------------------------------------

    async def plan(
        self,
        record: StepRecord,
        item: InboxItem,
        parsed: ParsedUpdate,
        *,
        head_text: str,
        text_of: Callable[[ParsedUpdate], str],
    ) -> Turn | Wait:
        """The turn `item` heads, or `Wait` when more of it may still arrive."""
        head = Member(item, parsed, head_text)
        if "reply" in record.progress:
            return Turn(head, sealed=True)  # answered already: finish what is left
        known = {m["update_id"] for m in _turn(record).get("members", [])}
        album = parsed["media_group_id"]
        if not leads(parsed) or (self.config.mode == "queue" and album is None and not known):
            return Turn(head)
        followers: list[Member] = []
        stopped = self.config.mode == "queue"
        scan = self.config.max_messages * 2 + ALBUM_MAX
        for row in await self.inbox.followers(item, scan):
            other = parse_update(row.update())
            album_item = album is not None and other["media_group_id"] == album
            if row.update_id in known or (album_item and _same_sender(parsed, other)):
                followers.append(Member(row, other, text_of(other)))
                continue
            if stopped or len(followers) + 1 >= self.config.max_messages:
                continue
            if joins(parsed, other):
                followers.append(Member(row, other, text_of(other)))
            else:
                stopped = True  # the turn ends at the first message that is not part of it
        turn = Turn(head, followers)
        due = self._due(turn)
        if due > self.clock() + 0.005:
            return Wait(due)
        return turn

    def _due(self, turn: Turn, *, debounce: bool = True) -> float:
        """When the turn is complete enough to answer: quiet for `debounce`, albums given
        `album_grace` after their newest item; never later than `max_wait` after the head."""
        c = self.config
        members = [turn.head, *turn.followers]
        due = 0.0
        if debounce and c.mode != "queue" and c.debounce > 0:
            due = max(m.item.received_at for m in members) + c.debounce
        if c.album_grace > 0:
            albums: dict[str, list[float]] = {}
            for m in members:
                if m.parsed["media_group_id"]:
                    albums.setdefault(m.parsed["media_group_id"], []).append(m.item.received_at)
            for times in albums.values():
                if len(times) < ALBUM_MAX:
                    due = max(due, max(times) + c.album_grace)
        cap = turn.head.item.received_at + max(c.max_wait, c.album_grace)
        return min(due, cap)

    async def album_wait(self, item: InboxItem, parsed: ParsedUpdate) -> Wait | list[Member]:
        """An album item that did not address the bot (a group): wait out the album's grace
        window, then return its siblings so the caller can see whether one of them did."""
        album = parsed["media_group_id"]
        if album is None:
            return []
        siblings = [
            Member(row, other, other["text"])
            for row in await self.inbox.followers(item, ALBUM_MAX * 3)
            if (other := parse_update(row.update()))["media_group_id"] == album
            and _same_sender(parsed, other)
        ]
        due = self._due(Turn(Member(item, parsed, parsed["text"]), siblings), debounce=False)
        if due > self.clock() + 0.005:
            return Wait(due)
        return siblings

    # --- the followers' history rows ---------------------------------------------------------

    async def record_members(
        self,
        record: StepRecord,
        turn: Turn,
        *,
        user_id: str,
        chat_id: int,
        metadata: Callable[[ParsedUpdate], dict[str, Any]],
    ) -> list[str]:
        """Write each follower's inbound history row once (see "Guarantees"); drop the ones
        the history had already (duplicates). Returns the steps run."""
        if turn.sealed or not turn.followers:
            return []
        steps: list[str] = []
        state = _turn(record)
        members = [{"update_id": f.update_id, "seq": f.item.seq} for f in turn.followers]
        if state.get("members") != members:
            state["members"] = members
            await record.save()  # listed before any of their rows can exist
        logged = set(state.get("logged", []))
        skipped = set(state.get("skipped", []))
        for member in turn.followers:
            update_id = member.update_id
            if update_id in logged or update_id in skipped:
                continue
            found = await self.history.recorded_inbound(
                user_id, update_id, message_key(member.parsed), chat_id, resumed=True
            )
            if found == "other":
                skipped.add(update_id)
                log.info("turn member already in the history", extra={"member": update_id})
            else:
                if found is None:
                    meta = metadata(member.parsed)
                    meta.setdefault("gateway", {})["turn"] = turn.head.update_id
                    await self.history.log_or_queue(
                        {
                            "user_id": user_id,
                            "message_text": member.parsed["text"],
                            "direction": "in",
                            "telegram_message_id": message_key(member.parsed),
                            "metadata": meta,
                            "chat_id": chat_id,
                        },
                        dedupe_key=f"in:{update_id}",
                    )
                    steps.append("log_in_member")
                logged.add(update_id)
            state["logged"] = sorted(logged)
            state["skipped"] = sorted(skipped)
            await record.save()
        turn.followers = [f for f in turn.followers if f.update_id not in skipped]
        return steps

    # --- what the agent gets -----------------------------------------------------------------

    def request(self, turn: Turn) -> tuple[str, int | None, dict[str, Any]]:
        """(text, message_id, extra fields) for the agent: the merged text, the first
        message's id, `parts` (several messages) and `attachments` (files)."""
        members = turn.members
        first = members[0].parsed
        attachments = [a for m in members for a in attachments_of(m.item.update(), self.files)]
        extra: dict[str, Any] = {}
        if attachments:
            extra["attachments"] = attachments
        if len(members) == 1:
            return turn.head.text, first["message_id"], extra
        extra["parts"] = [
            {
                "update_id": m.update_id,
                "message_id": m.parsed["message_id"],
                "text": m.text,
                **({"media": m.parsed["media"]} if m.parsed["media"] else {}),
            }
            for m in members
        ]
        album = {m.parsed["media_group_id"] for m in members} - {None}
        if len(album) == 1:
            extra["media_group_id"] = album.pop()
        own = [m.text for m in members if _has_own_text(m.parsed) and m.text]
        text = "\n".join(own) if own else " ".join(m.text for m in members)
        return text, first["message_id"], extra

    # --- interrupting ------------------------------------------------------------------------

    @contextlib.contextmanager
    def asking(self, turn: Turn) -> Iterator[None]:
        """The agent call of `turn`: cancellable by `cancellations.cancel(chat_key, ...)`;
        under `TURN_MODE=interrupt`, a new message of the turn's sender cancels it."""
        key = turn.head.item.chat_key
        self._asking[key] = turn.head.parsed
        try:
            with self.cancellations.scope(key):
                yield
        finally:
            if self._asking.get(key) is turn.head.parsed:
                del self._asking[key]

    def note_interrupt(self, record: StepRecord) -> None:
        state = _turn(record)
        state["interrupts"] = int(state.get("interrupts", 0)) + 1

    def on_commit(self, rows: list[NewUpdate]) -> None:
        """From the ingest writer: a new message of a chat whose turn is with the agent."""
        if self.config.mode != "interrupt" or not self._asking:
            return
        for row in rows:
            head = self._asking.get(row.chat_key)
            if head is None or row.kind not in TURN_KINDS:
                continue
            try:
                other = parse_update(orjson.loads(row.payload))
            except ValueError:
                continue
            if joins(head, other) and self.cancellations.cancel(row.chat_key, INTERRUPT):
                log.info("turn interrupted by a new message", extra={"update": row.update_id})

    # --- done ----------------------------------------------------------------------------

    async def finish(self, record: StepRecord, item: InboxItem) -> None:
        """The reply is queued: mark the followers done (before the head is)."""
        members = _turn(record).get("members", [])
        await self.inbox.finish_followers(
            item, [m["seq"] for m in members], f"answered in the turn of update {item.update_id}"
        )


def _turn(record: StepRecord) -> TurnRecord:
    state = record.progress.get("turn")
    if state is None:
        state = record.progress["turn"] = {}
    return state
