"""Message drafts (``sendMessageDraft``): a reply shown while it is generated.

A draft is keyed by (chat, thread, draft_id); each call replaces its text (Telegram animates the
change). It ends when the bot sends a message to that chat ("sent", the final message replaces
it), when the user presses stop on a draft that had ``can_stop`` ("stopped"), or when it was not
refreshed for ``draft_ttl`` seconds ("expired": Telegram's 30-second preview). Every text the
draft showed is kept in ``versions`` so that tests can check how the reply grew.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

DraftKey = tuple[int, int, int]  # chat_id, message_thread_id (0 = none), draft_id


@dataclass
class Draft:
    chat_id: int
    draft_id: int
    message_thread_id: int | None
    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)
    can_stop: bool = False
    keep_on_stop: bool = False
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    versions: list[str] = field(default_factory=list)
    state: str = "active"  # active | sent | stopped | expired
    message_id: int | None = None  # the message that replaced it ("sent")
    calls_after_stop: int = 0

    @property
    def key(self) -> DraftKey:
        return (self.chat_id, self.message_thread_id or 0, self.draft_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "draft_id": self.draft_id,
            "message_thread_id": self.message_thread_id,
            "text": self.text,
            "entities": self.entities,
            "can_stop": self.can_stop,
            "keep_on_stop": self.keep_on_stop,
            "started": self.started,
            "updated": self.updated,
            "versions": list(self.versions),
            "state": self.state,
            "message_id": self.message_id,
            "calls_after_stop": self.calls_after_stop,
        }


class Drafts:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.items: dict[DraftKey, Draft] = {}
        self.finished: list[Draft] = []

    def _expire(self) -> None:
        now = time.time()
        for key, draft in list(self.items.items()):
            if draft.state == "active" and now - draft.updated > self.ttl:
                draft.state = "expired"
                self.finished.append(self.items.pop(key))

    def update(
        self,
        chat_id: int,
        thread: int | None,
        draft_id: int,
        text: str,
        entities: list[dict[str, Any]],
        *,
        can_stop: bool,
        keep_on_stop: bool,
    ) -> Draft:
        """Show `text` in the draft (a new one, or the next version of an active one)."""
        self._expire()
        key = (chat_id, thread or 0, draft_id)
        draft = self.items.get(key)
        if draft is not None and draft.state == "stopped":
            draft.calls_after_stop += 1  # the user stopped it: nothing more is shown
            return draft
        if draft is None:
            draft = self.items[key] = Draft(chat_id, draft_id, thread, text)
        draft.text, draft.entities, draft.updated = text, entities, time.time()
        draft.can_stop, draft.keep_on_stop = can_stop, keep_on_stop
        draft.versions.append(text)
        return draft

    def get(self, chat_id: int, draft_id: int, thread: int | None = None) -> Draft | None:
        self._expire()
        return self.items.get((chat_id, thread or 0, draft_id))

    def send_replaces(self, chat_id: int, thread: int | None, message_id: int) -> list[Draft]:
        """A message from the bot ends the chat's active drafts (it is the final text)."""
        ended = []
        for key, draft in list(self.items.items()):
            if key[:2] == (chat_id, thread or 0) and draft.state == "active":
                draft.state, draft.message_id = "sent", message_id
                self.finished.append(self.items.pop(key))
                ended.append(draft)
        return ended

    def stop(self, draft: Draft) -> None:
        """The user pressed stop; later drafts with this id are accepted but not shown."""
        draft.state = "stopped"
        draft.updated = time.time()

    def for_chat(self, chat_id: int) -> list[Draft]:
        self._expire()
        every = [*self.finished, *self.items.values()]
        return sorted((d for d in every if d.chat_id == chat_id), key=lambda d: d.started)
