"""Per-chat pacing: a token bucket that answers "when may this chat send next?".

The global limit uses aiolimiter (a sender simply awaits its turn). Per-chat limits need a
different shape: the scheduler keeps thousands of chats and must know *when* each becomes
sendable so it can round-robin over the ready ones and sleep until the next one, without parking
a coroutine per chat. aiolimiter exposes no such "time until capacity", hence this small class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; starts full."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.burst = max(1.0, self.burst)
        self.tokens = self.burst
        self.stamp = self.clock()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def ready_at(self) -> float:
        """Clock time at which one token is available (0.0 if one is available now)."""
        now = self.clock()
        self._refill(now)
        return 0.0 if self.tokens >= 1 else now + (1 - self.tokens) / self.rate

    def take(self) -> None:
        """Spend one token (the caller checked `ready_at`)."""
        self._refill(self.clock())
        self.tokens -= 1

    def full(self) -> bool:
        """True when the bucket has refilled completely (an idle chat can be forgotten)."""
        self._refill(self.clock())
        return self.tokens >= self.burst

    def snapshot(self, wall: float) -> tuple[float, float]:
        """(tokens, wall time) to store, so another process can `restore` this bucket."""
        self._refill(self.clock())
        return self.tokens, wall

    def restore(self, tokens: float | None, at: float | None, wall: float) -> None:
        """Continue a bucket saved by `snapshot` (possibly in another process)."""
        if tokens is None or at is None:
            return
        self.tokens = min(self.burst, tokens + max(0.0, wall - at) * self.rate)
        self.stamp = self.clock()
