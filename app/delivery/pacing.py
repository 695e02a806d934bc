"""Pacing: when may the bot, and each chat, send next?

Two shapes, for two questions:

- `Pacer` spaces the bot's sends evenly (`rate` per second) with a small burst allowance: the
  generic cell rate algorithm (GCRA), i.e. a "theoretical arrival time" that advances by
  1/rate per send. A token bucket holding a third of a second's worth (what aiolimiter gave us)
  lets 10 sends leave at once after an idle moment, and a chaos run measured Telegram-style
  stand-ins refusing exactly those bunches; even spacing never bunches, whatever the idle time.
- `SharedPacer` is the same algorithm with its one number in PostgreSQL, so N replicas of one
  bot together stay under Telegram's per-bot limit (~30/s): each send reserves its slot with one
  atomic statement (`tat = greatest(tat, now) + interval`, in the database's clock, so replicas'
  clocks do not matter). If the database does not answer quickly, the process paces itself
  locally for a while: a send may be paced less well, but it is never held up by the pacer.
- `TokenBucket` answers "when will this chat have a token?" without parking a coroutine per
  chat: the scheduler keeps thousands of chats, round-robins over the ready ones and sleeps
  until the next one is due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.logger import get_logger

log = get_logger(__name__)


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

    async def aclose(self) -> None:
        """Nothing to release (the shared pacer holds a connection)."""


# One round trip, one row lock held for the statement only, no WAL flush (the table is
# UNLOGGED): the row is created by the first send of a bot, then advanced by `slots` intervals
# from whichever is later, the saved arrival time or the database's clock. Returns the new
# arrival time and that clock, both in epoch seconds.
RESERVE_POSTGRES = text(
    """
    WITH c AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
    INSERT INTO delivery_bot_pacing AS p (bot_id, tat)
    SELECT :bot, c.now + :step FROM c
    ON CONFLICT (bot_id) DO UPDATE SET tat = greatest(p.tat, excluded.tat - :step) + :step
    RETURNING p.tat, (SELECT now FROM c) AS now
    """
)


class SharedPacer:
    """`Pacer` for N replicas of one bot: the arrival time lives in PostgreSQL (one row per bot).

    Each `acquire()` reserves the next bot-wide slot with `RESERVE_POSTGRES` on a connection of
    its own (autocommit, so the statement is the whole transaction: one round trip) and sleeps
    until the slot, minus the burst tolerance, is due. The sleep is computed in the database's
    clock, which every replica shares. When the statement fails or takes longer than `timeout`,
    the process paces itself with a local `Pacer` for `fallback_seconds` and then tries the
    database again: a database that stalls must not stall every reply (and with the database
    down, nothing can be recorded as sent anyway, so local pacing over-sends very little).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        bot_id: str,
        rate: float,
        *,
        burst: int = 2,
        timeout: float = 0.5,
        fallback_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.engine = engine
        self.bot_id = bot_id[:32]
        self.interval = 1.0 / rate
        self.tolerance = max(0, burst - 1) * self.interval
        self.timeout = timeout
        self.fallback_seconds = fallback_seconds
        self.clock = clock
        self.local = Pacer(rate, burst=burst, clock=clock)
        self.fallbacks = 0  # times the database did not answer and local pacing took over
        self._local_until = 0.0
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def reserve(self, slots: int = 1) -> tuple[float, float]:
        """Reserve `slots` consecutive bot-wide slots: (first slot, database clock), epoch s.

        Raises whatever the database raises; `acquire` turns that into local pacing."""
        step = slots * self.interval
        if self._conn is None:
            conn = await self.engine.connect()
            try:
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                await conn.close()
                raise
        try:
            row = (
                await self._conn.execute(RESERVE_POSTGRES, {"bot": self.bot_id, "step": step})
            ).one()
        except BaseException:
            # A failed or cancelled statement may leave the connection mid-protocol.
            await self._drop_connection()
            raise
        tat, now = float(row[0]), float(row[1])
        return tat - step, now

    async def acquire(self) -> None:
        async with self._lock:  # one waiter at a time keeps this process's slots in order
            delay = await self._delay()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _delay(self) -> float:
        if self.clock() < self._local_until:
            return self.local.reserve()
        try:
            async with asyncio.timeout(self.timeout):
                slot, now = await self.reserve()
        except Exception as exc:  # includes TimeoutError
            self.fallbacks += 1
            self._local_until = self.clock() + self.fallback_seconds
            log.warning(
                "shared pacing unavailable; pacing this process alone for a while",
                extra={"error": f"{exc.__class__.__name__}: {exc}", "for": self.fallback_seconds},
            )
            return self.local.reserve()
        return max(0.0, slot - self.tolerance - now)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.invalidate()
                await conn.close()
            except Exception as exc:
                log.debug("pacing connection close failed", extra={"error": repr(exc)})

    async def aclose(self) -> None:
        """Give the connection back (before the engine is disposed)."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
