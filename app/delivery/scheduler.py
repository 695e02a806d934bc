"""When each part may go: chat leases, pacing, and a round-robin over ready chats.

- A process *leases* a chat (row in `delivery_chats`) before sending any of its parts, so one
  process at a time owns a chat's order and pacing; leases are renewed while the process lives
  and an expired lease is taken over by another replica. A chat's pacing state travels with
  its lease (`store.Pace`).
- For the chats it holds (a bounded set, refilled in batches, oldest work first), the scheduler
  keeps only the *head* part in memory. It round-robins over chats whose head is ready: per-chat
  bucket (1/s, burst 3), group bucket (20/min), flood wait, retry back-off; each dispatch then
  awaits the bot-wide pacer (30/s, evenly spaced; shared by every replica on PostgreSQL). One
  send per chat is in flight at a time, so a part never overtakes an earlier one of the same
  chat.
- After a send, the `Sender`'s `SendOutcome` says what comes next: the same head again (a
  retry, a flood wait, a migrated chat), or the chat's next pending part.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.delivery import store
from app.delivery.config import DeliveryConfig
from app.delivery.metrics import DeliveryMetrics
from app.delivery.pacing import Pacer, SharedPacer, TokenBucket
from app.delivery.sender import Sender, SendOutcome
from app.delivery.store import PartRow
from app.logger import get_logger

log = get_logger(__name__)

# Two different chats answered 429 within this window: the bot as a whole is flooding.
GLOBAL_FLOOD_WINDOW = 1.0
# Never send when our lease on the chat expires sooner than this (renewal may have stalled).
LEASE_SAFETY = 2.0

Transaction = Callable[..., AbstractAsyncContextManager[AsyncConnection]]


@dataclass
class ChatState:
    """What the scheduler knows of one leased chat."""

    chat_id: int
    bucket: TokenBucket
    group: TokenBucket | None
    head: PartRow | None = None
    flood_until: float = 0.0  # monotonic
    in_flight: bool = False
    releasing: bool = False
    recheck: bool = False
    send_to: int | None = None  # after a group migrated to a supergroup
    lease_until: float = 0.0  # wall clock
    #: Bumped whenever a send of this chat finishes: a head read from the database before
    #: that moment may be a part that was just sent, and must not replace the current head.
    epoch: int = 0

    def ready_at(self, mono: float, wall: float) -> float:
        """Monotonic time at which the head may be sent (inf without a head)."""
        if self.head is None or self.in_flight or self.releasing:
            return float("inf")
        t = max(self.bucket.ready_at(), self.flood_until)
        if self.group is not None:
            t = max(t, self.group.ready_at())
        if self.head.next_attempt_at > wall:
            t = max(t, mono + (self.head.next_attempt_at - wall))
        return t


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    chat_id: int = field(compare=False)


class Scheduler:
    """Leases chats and feeds their head parts to the `Sender` (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        sender: Sender,
        config: DeliveryConfig,
        metrics: DeliveryMetrics,
        transaction: Transaction,
        owner: str,
        *,
        on_outcome: Callable[[SendOutcome], Awaitable[None]],
        periodic: Callable[[], Awaitable[None]],
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.config = config
        self.metrics = metrics
        self._tx = transaction
        self.owner = owner
        self._on_outcome = on_outcome
        self._periodic = periodic
        # Telegram's ~30/s is per bot: on PostgreSQL (N replicas) the pace is shared through
        # the database; a SQLite gateway is one process and paces itself in memory.
        self.pacer: Pacer | SharedPacer
        if config.shared_pacing and engine.dialect.name == "postgresql":
            self.pacer = SharedPacer(
                engine, config.bot_id, config.rate_global_per_second, burst=config.global_burst
            )
        else:
            self.pacer = Pacer(config.rate_global_per_second, burst=config.global_burst)
        self.chats: dict[int, ChatState] = {}
        self.unreachable: set[int] = set()
        self.pause_until = 0.0  # monotonic; bot-wide flood wait
        self._ready: deque[int] = deque()
        self._timers: list[_Timer] = []
        self._timer_seq = 0
        self._wake = asyncio.Event()
        self._in_flight = 0
        self._recent_429: deque[tuple[float, int]] = deque()
        self.send_tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self.started = False
        self._last_refill = 0.0
        self._last_renew = 0.0
        self._last_periodic = 0.0
        # Buckets and flood waits of chats not held right now (previews used them).
        self._spare: dict[int, TokenBucket] = {}
        self._floods: dict[int, float] = {}

    def flooded(self, chat_id: int) -> bool:
        """Whether the chat (or the bot) is in a flood wait right now."""
        mono = time.monotonic()
        chat = self.chats.get(chat_id)
        until = chat.flood_until if chat is not None else self._floods.get(chat_id, 0.0)
        return self.pause_until > mono or until > mono

    def budget(self, chat_id: int) -> TokenBucket:
        """The chat's message bucket, shared by its outbox sends and its previews (a streamed
        reply's first message): the chat's held state, or a spare one its state adopts later."""
        chat = self.chats.get(chat_id)
        if chat is not None:
            return chat.bucket
        bucket = self._spare.pop(chat_id, None) or self._chat_bucket()
        self._spare[chat_id] = bucket  # most recent last
        while len(self._spare) > self.config.max_active_chats:
            self._spare.pop(next(iter(self._spare)))
        return bucket

    def flood(self, chat_id: int, retry_after: float) -> None:
        """Telegram answered 429 to something else than an outbox send (a preview): the chat's
        outbox waits `retry_after` too."""
        chat = self.chats.get(chat_id)
        if chat is not None:
            self._on_429(chat, retry_after)
            return
        self._floods[chat_id] = max(self._floods.get(chat_id, 0.0), time.monotonic() + retry_after)
        self.metrics.rate_limited.labels("chat").inc()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        poll = self.config.poll_interval
        while not self.stopping:
            try:
                mono = time.monotonic()
                if mono - self._last_renew >= self.config.lease_seconds / 3:
                    await self._renew()
                if mono - self._last_refill >= poll:
                    await self._refill()
                if mono - self._last_periodic >= max(poll, 1.0):
                    self._last_periodic = mono
                    await self._periodic()
                await self._dispatch_ready()
                await self._sleep_until_next(poll)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery scheduler error; continuing")
                await asyncio.sleep(min(poll, 1.0))

    def wake(self) -> None:
        self._wake.set()

    async def _sleep_until_next(self, poll: float) -> None:
        self._promote_timers()
        if self._ready and self._in_flight < self.config.max_in_flight:
            return
        delay = poll
        if self._timers:
            delay = min(delay, max(0.0, self._timers[0].at - time.monotonic()))
        if delay <= 0:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _push_timer(self, at: float, chat_id: int) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, _Timer(at, self._timer_seq, chat_id))

    def _schedule(self, chat: ChatState) -> None:
        """Put a chat in the ready ring or on the timer heap, according to its head."""
        at = chat.ready_at(time.monotonic(), time.time())
        if at == float("inf"):
            return
        if at <= time.monotonic():
            self._ready.append(chat.chat_id)
        else:
            self._push_timer(at, chat.chat_id)
        self._wake.set()

    def _promote_timers(self) -> None:
        mono = time.monotonic()
        while self._timers and self._timers[0].at <= mono:
            timer = heapq.heappop(self._timers)
            if timer.chat_id in self.chats and timer.chat_id not in self._ready:
                self._ready.append(timer.chat_id)

    async def _dispatch_ready(self) -> None:
        """Round-robin over ready chats: one part per chat per turn, paced bot-wide."""
        self._promote_timers()
        while self._ready and self._in_flight < self.config.max_in_flight and not self.stopping:
            chat_id = self._ready.popleft()
            chat = self.chats.get(chat_id)
            if chat is None:
                continue
            mono, wall = time.monotonic(), time.time()
            at = chat.ready_at(mono, wall)
            if at == float("inf"):
                continue
            if at > mono:
                self._push_timer(at, chat_id)
                continue
            if chat.lease_until - wall < LEASE_SAFETY:
                self._last_renew = 0.0  # renew at the next turn, then try again
                self._push_timer(mono + 0.2, chat_id)
                continue
            if self.pause_until > mono:
                self._ready.appendleft(chat_id)
                await asyncio.sleep(self.pause_until - mono)
                continue
            await self.pacer.acquire()
            if self.stopping:
                self._ready.appendleft(chat_id)
                return
            assert chat.head is not None
            part = chat.head
            chat.bucket.take()
            if chat.group is not None:
                chat.group.take()
            chat.in_flight = True
            self._in_flight += 1
            task = asyncio.create_task(self._send(chat, part), name=f"send-{part.id}")
            self.send_tasks.add(task)
            task.add_done_callback(self.send_tasks.discard)
            self._promote_timers()

    async def _send(self, chat: ChatState, part: PartRow) -> None:
        outcome = SendOutcome(part)
        try:
            outcome = await self.sender.send(part, chat.send_to)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery send failed unexpectedly", extra={"part_id": part.id})
        finally:
            chat.in_flight = False
            chat.epoch += 1
            self._in_flight -= 1
            self._wake.set()
        if outcome.flood is not None:
            self._on_429(chat, outcome.flood)
        if outcome.send_to is not None:
            chat.send_to = outcome.send_to
        if outcome.unreachable:
            self.unreachable.add(part.chat_id)
        await self._on_outcome(outcome)
        await self._advance(chat, outcome.head)

    async def _advance(self, chat: ChatState, head: PartRow | None) -> None:
        """After a send: keep the same head (retry), or move to the chat's next pending part."""
        if self.chats.get(chat.chat_id) is not chat:
            return
        if head is None:
            async with self.engine.connect() as conn:
                heads = await store.heads(conn, [chat.chat_id])
            head = heads.get(chat.chat_id)
            chat.recheck = False
        chat.head = head
        if head is None:
            await self._release([chat.chat_id])
        else:
            self._schedule(chat)

    def _on_429(self, chat: ChatState, retry_after: float) -> None:
        """Honour retry_after: for this chat, or for everything if the bot as a whole floods."""
        mono = time.monotonic()
        window = self._recent_429
        while window and mono - window[0][0] > GLOBAL_FLOOD_WINDOW:
            window.popleft()
        window.append((mono, chat.chat_id))
        bot_wide = len({c for _, c in window}) >= 2
        chat.flood_until = max(chat.flood_until, mono + retry_after)
        if bot_wide:
            self.pause_until = max(self.pause_until, mono + retry_after)
        scope = "bot" if bot_wide else "chat"
        self.metrics.rate_limited.labels(scope).inc()
        log.warning(
            "telegram flood wait",
            extra={"chat_id": chat.chat_id, "retry_after": retry_after, "scope": scope},
        )

    # --- chats and their leases ---------------------------------------------------------------

    def _new_chat(self, chat_id: int) -> ChatState:
        c = self.config
        group = None
        if chat_id < 0:
            # Groups: 20/min on top of the per-chat limit; a small burst, not a minute's worth.
            group = TokenBucket(c.rate_group_per_minute / 60.0, min(c.rate_chat_burst - 1, 2))
        bucket = self._spare.pop(chat_id, None) or self._chat_bucket()
        chat = ChatState(chat_id, bucket, group)
        chat.flood_until = self._floods.pop(chat_id, 0.0)
        return chat

    def _chat_bucket(self) -> TokenBucket:
        c = self.config
        # Keep one token of the chat's burst in reserve (Telegram's edge is where jitter hurts).
        burst = c.rate_chat_burst - 1 if c.rate_chat_burst > 1 else 1
        return TokenBucket(c.rate_chat_per_second, burst)

    async def adopt(self, chat_ids: list[int]) -> None:
        """Lease these chats (if free) and load their heads: work arrived for them."""
        if self.stopping or not self.started:
            return
        fresh: list[int] = []
        for cid in chat_ids:
            existing = self.chats.get(cid)
            if existing is not None:
                existing.recheck = True
                if existing.head is None and not existing.in_flight and not existing.releasing:
                    fresh.append(cid)
            elif len(self.chats) < self.config.max_active_chats:
                fresh.append(cid)
        if not fresh:
            return
        # Two adopts of one chat can overlap (a new reply, and the refill or a release's
        # re-check): the one that read its heads before a send finished must not bring the
        # sent part back as the head (it would be sent twice). Epochs tell.
        before = {
            cid: (c.epoch if (c := self.chats.get(cid)) is not None else None) for cid in fresh
        }
        lease = self.config.lease_seconds
        async with self._tx() as conn:
            held = await store.claim_chats(conn, fresh, self.owner, lease)
            heads = await store.heads(conn, held)
            saved = await store.paces(conn, [c for c in held if c not in self.chats])
        wall = time.time()
        until = wall + lease
        idle = []
        for cid in held:
            chat = self.chats.get(cid)
            if chat is None:
                chat = self.chats[cid] = self._new_chat(cid)
                pace = saved.get(cid)
                if pace is not None:
                    self._restore(chat, pace, wall)
            elif before.get(cid) is None or chat.epoch != before[cid]:
                # Another adopt created the chat meanwhile, or one of its sends finished: their
                # view is fresher than the heads read here.
                chat.lease_until = until
                continue
            chat.lease_until = until
            if chat.in_flight or chat.releasing or chat.head is not None:
                continue
            chat.head = heads.get(cid)
            chat.recheck = False
            if chat.head is None:
                idle.append(cid)
            else:
                self._schedule(chat)
        if idle:
            await self._release(idle)

    async def _release(self, chat_ids: list[int]) -> None:
        chats = [self.chats[c] for c in chat_ids if c in self.chats]
        for chat in chats:
            chat.releasing = True
        try:
            async with self._tx() as conn:
                await store.release_chats(
                    conn, {c.chat_id: self._pace(c) for c in chats}, self.owner
                )
        finally:
            again = []
            for chat in chats:
                if self.chats.get(chat.chat_id) is chat:
                    del self.chats[chat.chat_id]
                if chat.recheck:
                    again.append(chat.chat_id)
            if again:
                await self.adopt(again)

    async def release_all(self) -> None:
        """Give every lease back (graceful stop): another replica can take the chats at once."""
        with contextlib.suppress(Exception):
            async with self._tx() as conn:
                await store.release_chats(
                    conn, {c: self._pace(chat) for c, chat in self.chats.items()}, self.owner
                )
        self.chats.clear()
        self._ready.clear()
        self._timers.clear()

    async def _refill(self) -> None:
        """Take more chats with pending work (bounded batch), e.g. from a dead replica."""
        self._last_refill = time.monotonic()
        room = self.config.max_active_chats - len(self.chats)
        if room <= 0:
            return
        async with self.engine.connect() as conn:
            ids = await store.claimable_chats(conn, min(room, 200), set(self.chats))
            pending = await store.count_pending(conn)
        self.metrics.queued.set(pending)
        if ids:
            await self.adopt(ids)

    async def _renew(self) -> None:
        self._last_renew = time.monotonic()
        ids = list(self.chats)
        if not ids:
            return
        lease = self.config.lease_seconds
        async with self._tx() as conn:
            held = await store.renew_chats(conn, ids, self.owner, lease)
        until = time.time() + lease
        for cid in ids:
            chat = self.chats.get(cid)
            if chat is None:
                continue
            if cid in held:
                chat.lease_until = until
            elif not chat.in_flight:
                log.warning("chat lease lost to another process", extra={"chat_id": cid})
                del self.chats[cid]

    def _pace(self, chat: ChatState) -> store.Pace:
        wall, mono = time.time(), time.monotonic()
        tokens, at = chat.bucket.snapshot(wall)
        group = chat.group.snapshot(wall)[0] if chat.group is not None else None
        flood = wall + (chat.flood_until - mono) if chat.flood_until > mono else None
        return store.Pace(tokens, group, at, flood)

    def _restore(self, chat: ChatState, pace: store.Pace, wall: float) -> None:
        chat.bucket.restore(pace.tokens, pace.at, wall)
        if chat.group is not None:
            chat.group.restore(pace.group_tokens, pace.at, wall)
        if pace.flood_until is not None and pace.flood_until > wall:
            chat.flood_until = time.monotonic() + (pace.flood_until - wall)
