"""The simulated world: users, chats with their transcripts, the update queue, the webhook
setting, recorded calls, injected faults and a tiny event bus for the web page.

Everything lives in one asyncio loop, so plain data structures are enough; the only waiting
(long polling, the webhook worker, event subscribers) goes through asyncio primitives.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.config import SandboxConfig
from sandbox.drafts import Drafts
from sandbox.files import FileStore
from sandbox.limits import FloodControl

if TYPE_CHECKING:
    from sandbox.business import BusinessConnection

# Telegram's default when allowed_updates is not given: every kind except these three.
OPT_IN_KINDS = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
SECRET_PARAMS = frozenset({"secret_token"})


@dataclass
class User:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    blocked: bool = False

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def to_control(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Chat:
    id: int
    type: str  # "private", "group" or "supergroup"
    title: str | None = None
    user: User | None = None
    members: list[int] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    next_message_id: int = 1
    typing_until: float = 0.0
    chat_instance: str = field(default_factory=lambda: str(random.randint(10**18, 9 * 10**18)))
    username: str | None = None  # public supergroups
    business_connection_id: str | None = None  # a business owner's chat with a customer
    # message_id -> every version of a bot message (the original first), for edit history
    history: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """The ``chat`` object as it appears inside a Message."""
        if self.type == "private" and self.user is not None:
            out = {
                k: v for k, v in self.user.to_api().items() if k not in ("is_bot", "language_code")
            }
            out["type"] = "private"
            return out
        out = {"id": self.id, "title": self.title or "Group", "type": self.type}
        if self.username:
            out["username"] = self.username
        return out

    def take_message_id(self) -> int:
        mid = self.next_message_id
        self.next_message_id += 1
        return mid

    def find(self, message_id: int) -> dict[str, Any] | None:
        """The message with this id; never one with id 0 (Telegram's ephemeral and scheduled
        messages share that id, so it identifies nothing)."""
        if message_id == 0:
            return None
        for m in self.messages:
            if m.get("message_id") == message_id:
                return m
        return None

    def typing(self) -> bool:
        return time.time() < self.typing_until


@dataclass
class CallRecord:
    id: int
    time: float
    method: str
    params: dict[str, Any]
    status: int = 200
    ok: bool = True
    description: str | None = None
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As shown by ``/sandbox/calls``: a webhook secret is masked, never echoed."""
        out = asdict(self)
        out["params"] = {
            k: ("***" if k in SECRET_PARAMS and v else v) for k, v in self.params.items()
        }
        return out


@dataclass
class Fault:
    """Makes the next `remaining` calls of `method` misbehave (None = until cleared)."""

    id: int
    method: str  # lower-case method name or "*"
    kind: str  # "error" | "flood" | "latency" | "drop" | "hang"
    remaining: int | None = 1
    status: int = 500
    body: dict[str, Any] | None = None
    retry_after: int = 5
    latency: float = 0.0
    hang_seconds: float = 60.0

    def matches(self, method: str) -> bool:
        """`method` may be a pattern: ``"*"``, ``"editMessage*"`` (case-insensitive)."""
        alive = self.remaining is None or self.remaining > 0
        return alive and fnmatch.fnmatchcase(method.lower(), self.method.lower())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Webhook:
    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


class EventBus:
    """Fan-out of transcript changes to every connected page (one queue per subscriber)."""

    def __init__(self) -> None:
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, event: dict[str, Any]) -> None:
        for q in list(self.subscribers):
            if q.qsize() < 1000:  # a stuck page must not grow memory without bound
                q.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(q)


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.events = EventBus()
        self.flood = FloodControl(config.limits.model_copy())
        self.files = FileStore(config.state_dir)
        self.next_update_id = config.first_update_id
        self.updates_changed = asyncio.Event()
        self.webhook_worker_restarts = 0  # after a surprise (sandbox.webhook); kept by reset()
        self.reset()

    def reset(self) -> None:
        """Forget everything except the update id counter, which keeps rising so that a
        client deduplicating by update_id is never fooled across tests."""
        self.users: dict[int, User] = {}
        self.chats: dict[int, Chat] = {}
        self.pending: deque[dict[str, Any]] = deque()
        self.webhook = Webhook()
        self.calls: list[CallRecord] = []
        self.faults: list[Fault] = []
        self.deliveries: list[dict[str, Any]] = []
        self.callback_queries: dict[str, dict[str, Any]] = {}
        self.callback_answers: list[dict[str, Any]] = []
        self.flood_refusals = 0
        self.ids = itertools.count(1)
        self.user_ids = itertools.count(1_000_001)
        self.group_ids = itertools.count(1001)
        self.drafts = Drafts(self.config.draft_ttl)
        self.business: dict[str, BusinessConnection] = {}
        # (scope as JSON, language_code) -> commands, as setMyCommands stored them
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.allowed_updates: list[str] | None = None
        self.filtered: list[dict[str, Any]] = []  # updates not delivered (allowed_updates)
        self.files.reset()
        self.flood.configure(self.config.limits.model_copy())
        self.wake()
        self.events.publish({"type": "reset"})

    def wake(self) -> None:
        """Tell long polls and the webhook worker that something changed."""
        self.updates_changed.set()
        self.updates_changed = asyncio.Event()

    # users and chats -------------------------------------------------------------------
    def add_user(self, **fields: Any) -> User:
        uid = fields.pop("id", None) or next(self.user_ids)
        while uid in self.users and "id" not in fields:
            uid = next(self.user_ids)
        user = User(id=int(uid), **fields)
        self.users[user.id] = user
        self.chats.setdefault(user.id, Chat(id=user.id, type="private", user=user))
        self.chats[user.id].user = user
        self.events.publish({"type": "user", "user": user.to_control()})
        return user

    def add_group(
        self,
        title: str,
        members: list[int],
        chat_id: int | None = None,
        *,
        kind: str = "group",
        username: str | None = None,
    ) -> Chat:
        """A group (ids -1001, -1002, ...) or supergroup (ids -100xxxxxxxxxx, as Telegram's)."""
        if chat_id is None:
            n = next(self.group_ids)
            chat_id = -(10**12 + n) if kind == "supergroup" else -n
        chat = Chat(id=chat_id, type=kind, title=title, members=list(members), username=username)
        gid = chat_id
        self.chats[gid] = chat
        self.events.publish({"type": "chat", "chat": self.chat_summary(chat)})
        return chat

    def chat_summary(self, chat: Chat) -> dict[str, Any]:
        return {
            "id": chat.id,
            "type": chat.type,
            "title": chat.title or (chat.user.first_name if chat.user else str(chat.id)),
            "typing": chat.typing(),
            "message_count": len(chat.messages),
            "blocked": bool(chat.user and chat.user.blocked),
            "members": list(chat.members),
            "username": chat.username,
            "business_connection_id": chat.business_connection_id,
        }

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.config.bot_id,
            "is_bot": True,
            "first_name": self.config.bot_first_name,
            "username": self.config.bot_username,
        }

    # transcript -------------------------------------------------------------------------
    def append_message(self, chat: Chat, message: dict[str, Any]) -> None:
        chat.messages.append(message)
        if message.get("from", {}).get("is_bot"):
            chat.typing_until = 0.0  # the bot's next message ends "typing"
        self.events.publish({"type": "message", "chat_id": chat.id, "message": message})

    def set_typing(self, chat: Chat, action: str) -> None:
        chat.typing_until = time.time() + self.config.typing_seconds
        self.events.publish(
            {
                "type": "typing",
                "chat_id": chat.id,
                "action": action,
                "seconds": self.config.typing_seconds,
            }
        )

    # updates ----------------------------------------------------------------------------
    def wants(self, kind: str) -> bool:
        """Whether the bot subscribed to this update kind (``allowed_updates``)."""
        if not self.allowed_updates:
            return kind not in OPT_IN_KINDS
        return kind in self.allowed_updates

    def enqueue(
        self, update: dict[str, Any], *, raw: bool = False, filtered: bool | None = None
    ) -> dict[str, Any]:
        """Queue an update for the webhook worker or getUpdates (in order).

        Generated updates of a kind the bot did not subscribe to are not delivered (Telegram
        never creates them); they are kept in ``self.filtered``. Raw updates are delivered as
        given unless `filtered` asks for the same treatment.
        """
        if raw:
            uid = update.get("update_id")
            if isinstance(uid, int) and uid >= self.next_update_id:
                self.next_update_id = uid + 1
        else:
            update = {"update_id": self.next_update_id, **update}
            self.next_update_id += 1
        kind = next((k for k in update if k != "update_id"), "")
        if (not raw if filtered is None else filtered) and not self.wants(kind):
            self.filtered.append(update)
            return update
        self.pending.append(update)
        self.wake()
        return update

    # recording --------------------------------------------------------------------------
    def record(self, method: str, params: dict[str, Any]) -> CallRecord:
        rec = CallRecord(id=next(self.ids), time=time.time(), method=method, params=params)
        self.calls.append(rec)
        return rec

    def take_fault(self, method: str) -> list[Fault]:
        """Faults that apply to this call; each one's counter goes down by one."""
        hits = [f for f in self.faults if f.matches(method)]
        for f in hits:
            if f.remaining is not None:
                f.remaining -= 1
        self.faults = [f for f in self.faults if f.remaining is None or f.remaining > 0]
        return hits
