"""The states rows of the gateway's own tables go through, as values stored in `state` columns.

StrEnums, so a state compares equal to its stored text (`InboxState.DONE == "done"`) and reads
back from the database without conversion.
"""

from __future__ import annotations

from enum import StrEnum


class InboxState(StrEnum):
    """An update: `pending` (waiting, or running under a live lease) until it ends."""

    PENDING = "pending"
    DONE = "done"  # answered (or recorded, for edits), or a duplicate
    IGNORED = "ignored"  # nothing the gateway answers (service messages, channel posts, ...)
    DEAD = "dead"  # set aside after repeated failures, for a human (`/admin/dead`)


class RetryState(StrEnum):
    """A queued history write: replayed until it is written, or set aside."""

    PENDING = "pending"
    DEAD = "dead"  # refused for good (a 4xx) or failed too often, for a human
