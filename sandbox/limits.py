"""Flood control as token buckets: per chat, per bot, and per group chat (per minute).

A client that paces itself exactly at the advertised rate must never be refused, so a call
that would have to wait at most ``tolerance`` seconds for its token is let through (the bucket
may then go slightly negative, which the next refill pays back). Refusals carry the wait time
so that the 429's ``retry_after`` tells the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.config import LimitSettings


@dataclass
class Bucket:
    rate: float  # tokens per second
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self) -> float:
        """Seconds until one whole token is available (0 if it is now)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class FloodControl:
    def __init__(
        self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def configure(self, settings: LimitSettings) -> None:
        self.settings = settings
        self.buckets.clear()

    def _bucket(self, key: str, rate: float, burst: float, now: float) -> Bucket:
        b = self.buckets.get(key)
        if b is None or b.rate != rate or b.burst != burst:
            b = self.buckets[key] = Bucket(rate, max(burst, 1.0), max(burst, 1.0), now)
        b.refill(now)
        return b

    def acquire(self, chat_id: int | None) -> float:
        """A new message: take a token from every bucket that applies; return 0, or the wait."""
        s, now = self.settings, self.clock()
        specs: list[tuple[str, float, float]] = [("bot", s.global_rate, s.global_burst)]
        if chat_id is not None:
            specs.append((f"chat:{chat_id}", s.per_chat_rate, s.per_chat_burst))
            if chat_id < 0:
                specs.append((f"group:{chat_id}", s.group_rate_per_minute / 60, s.group_burst))
        return self._take(specs, now)

    def acquire_edit(self, chat_id: int) -> float:
        """An edit (text or markup): edits have their own, stricter buckets in groups."""
        s, now = self.settings, self.clock()
        specs = [(f"edit:{chat_id}", s.edit_per_chat_rate, s.edit_per_chat_burst)]
        if chat_id < 0:
            specs.append(
                (f"edit-group:{chat_id}", s.edit_group_rate_per_minute / 60, s.edit_group_burst)
            )
        return self._take(specs, now)

    def acquire_draft(self, chat_id: int) -> float:
        """A draft update (sendMessageDraft); unlimited unless ``draft_rate`` is set."""
        s = self.settings
        return self._take([(f"draft:{chat_id}", s.draft_rate, s.draft_burst)], self.clock())

    def _take(self, specs: list[tuple[str, float, float]], now: float) -> float:
        buckets = [self._bucket(key, rate, burst, now) for key, rate, burst in specs if rate > 0]
        wait = max((b.wait_time() for b in buckets), default=0.0)
        if wait > self.settings.tolerance:
            return wait
        for b in buckets:
            b.tokens -= 1
        return 0.0
