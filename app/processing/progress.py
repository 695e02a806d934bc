"""The step record of an update: what the pipeline has done so far, written in one place.

Each step's result goes into the inbox row's `progress` (JSON) as soon as it is done, so an
update interrupted by a crash resumes at the first step not yet done: no second agent call,
history row or reply. This module owns that record: its shape (`Progress`) and how it is
saved (`StepRecord`), for an inbox item and for the original `process_message_flow`, which has
no inbox row and so remembers nothing.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

from app.storage.inbox import Inbox, InboxItem


class ReplyRecord(TypedDict, total=False):
    """The agent's answer, kept so that a resumed update does not ask the agent again."""

    text: str
    actions: list[Any]
    source: str
    stopped: bool  # the user stopped the answer: `text` is what had been shown
    stopped_by: int  # the update id of that stop (`/stop`, or Telegram's stop button)


class StreamRecord(TypedDict, total=False):
    """A streamed reply on its way: the preview already in the chat. Saved the moment it
    exists, so a restarted process writes the final text over this message rather than
    leaving it orphaned and sending a second one."""

    message_id: int  # STREAM_MODE=edit: the preview message
    draft_id: int  # STREAM_MODE=draft: the draft being shown


class TurnRecord(TypedDict, total=False):
    """The followers of a turn (the updates queued behind its head that it answers too).

    `members` is saved before any of their inbound rows is written, so a member's row can only
    exist once it is listed (a resumed turn looks for its own rows); `logged` and `skipped`
    say which rows are written and which messages were in the history already.
    """

    members: list[dict[str, int]]  # [{"update_id", "seq"}], in arrival order
    logged: list[int]  # update ids whose inbound row is written (or queued)
    skipped: list[int]  # update ids found in the history, written by someone else
    interrupts: int  # TURN_MODE=interrupt: how often a new message restarted the agent call


class Progress(TypedDict, total=False):
    """Completed steps of one update (every key optional: absent means not done yet)."""

    cb_answered: bool  # the pressed button's spinner was stopped
    user: dict[str, Any]  # the User Service's user (the user step is done)
    in_logged: bool  # the inbound history row is written (or queued for retry)
    stream: StreamRecord  # a streamed reply's preview is in the chat
    feedback: bool  # the pressed button's keyboard was changed (BUTTON_FEEDBACK)
    turn: TurnRecord  # the other updates this turn answers (app.processing.turns)
    reply: ReplyRecord  # the agent answered
    enqueued: bool  # the reply is in the delivery outbox
    outage_waits: int  # how many times a dependency outage sent the update back (uncounted)


def load(raw: Any) -> Progress:
    """A stored record (already decoded JSON, or None) as `Progress`; unknown keys are kept."""
    return dict(raw) if isinstance(raw, dict) else {}  # type: ignore[return-value]


class StepRecord(Protocol):
    """Where a step's result is remembered."""

    update_id: int | None
    job_key: str
    chat_key: str
    progress: Progress

    async def save(self) -> None: ...


class InboxRecord:
    """The record of a claimed inbox item: saved into its row (only while we hold the lease)."""

    def __init__(self, inbox: Inbox, item: InboxItem) -> None:
        self.inbox = inbox
        self.item = item
        self.update_id: int | None = item.update_id
        self.job_key = f"reply:{item.update_id}"
        self.chat_key = item.chat_key
        self.seq = item.seq
        self.progress: Progress = load(item.progress)

    async def save(self) -> None:
        await self.inbox.save_progress(self.item.seq, dict(self.progress))


class Unrecorded:
    """For `process_message_flow`: no inbox row, so nothing to save and nothing to resume."""

    def __init__(self, job_key: str, chat_key: str, update_id: int | None = None) -> None:
        self.update_id = update_id
        self.job_key = job_key
        self.chat_key = chat_key
        self.progress: Progress = {}

    async def save(self) -> None:
        return None


def note_outage(progress: Progress) -> int:
    """Count one more outage wait; returns the count (the back-off grows with it)."""
    waits = int(progress.get("outage_waits", 0)) + 1
    progress["outage_waits"] = waits
    return waits
