"""Pacing: when may the bot, and each chat, send next?

Two shapes, for two questions:

- `Pacer` spaces the bot's sends evenly (`rate` per second) with a small burst allowance: the
  generic cell rate algorithm (GCRA), i.e. a "theoretical arrival time" that advances by
  1/rate per send. A token bucket holding a third of a second's worth (what aiolimiter gave us)
  lets 10 sends leave at once after an idle moment, and a chaos run measured Telegram-style
  stand-ins refusing exactly those bunches; even spacing never bunches, whatever the idle time.
- `TokenBucket` answers "when will this chat have a token?" without parking a coroutine per
  chat: the scheduler keeps thousands of chats, round-robins over the ready ones and sleeps
  until the next one is due.
"""

from __future__ import annotations

import asyncio
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

    def tokens_now(self) -> float:
        """Tokens available right now (after refilling)."""
        self._refill(self.clock())
        return self.tokens

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


class Pacer:
    """Even spacing of `rate` sends per second, at most `burst` of them back to back (GCRA).

    `acquire()` returns when the caller may send. The state is one number, the theoretical
    arrival time of the next send, so it is cheap to share (see the scale-out docs).
    """

    def __init__(
        self, rate: float, *, burst: int = 2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.tolerance = max(0, burst - 1) * self.interval
        self.clock = clock
        self._tat = 0.0  # theoretical arrival time of the next send
        self._lock = asyncio.Lock()

    def reserve(self) -> float:
        """Take the next slot; seconds to wait before using it (0 when it is due now)."""
        now = self.clock()
        tat = max(self._tat, now)
        self._tat = tat + self.interval
        return max(0.0, tat - self.tolerance - now)

    async def acquire(self) -> None:
        async with self._lock:  # one waiter at a time keeps slots in request order
            delay = self.reserve()
            if delay > 0:
                await asyncio.sleep(delay)
