"""States of the outbox rows (`delivery_jobs.state`, `delivery_parts.state`)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A reply: pending until every part is sent; then the hook runs (sent -> recorded)."""

    PENDING = "pending"
    SENT = "sent"  # every part is with Telegram; the `on_delivered` hook still owes its work
    RECORDED = "recorded"  # the hook returned (or there is none)
    PARKED = "parked"  # a part gave up after retries; re-sendable from the admin API
    FAILED = "failed"  # the chat became unreachable (403, chat not found)
    SKIPPED = "skipped"  # the chat was already unreachable when the reply arrived


class PartState(StrEnum):
    """One message of a reply."""

    PENDING = "pending"
    SENT = "sent"
    PARKED = "parked"
    FAILED = "failed"
    SKIPPED = "skipped"


#: A job in one of these states will not change by itself (`wait` returns).
TERMINAL_JOB_STATES = frozenset(
    {JobState.SENT, JobState.RECORDED, JobState.PARKED, JobState.FAILED, JobState.SKIPPED}
)
