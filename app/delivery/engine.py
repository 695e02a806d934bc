"""The outbound delivery engine: durable queue in, paced and ordered Telegram sends out.

How it works (docs/delivery.md has the full story):

- `enqueue` splits a reply into parts and writes the job and its parts in one transaction,
  idempotent on `job_key`.
- A process *leases* a chat (row in `delivery_chats`) before sending any of its parts, so one
  process at a time owns a chat's order and pacing; leases are renewed while the process lives
  and an expired lease is taken over by another replica.
- For the chats it holds (a bounded set, refilled in batches, oldest work first), the scheduler
  keeps only the *head* part in memory. It round-robins over chats whose head is ready: per-chat
  bucket (1/s, burst 3), group bucket (20/min), flood wait, retry back-off. Each dispatch then
  awaits the bot-wide pacer (30/s, evenly spaced). One send per chat is in flight at a time, so a
  part never overtakes an earlier one of the same chat.
- A result is committed right after Telegram answers: sent (message_id), retry later (5xx,
  timeout: exponential back-off with jitter), park (retries exhausted: the part and the rest of
  its job), fail the chat (403, chat not found: marked unreachable until `mark_active`).
  A 429 waits `retry_after` and consumes no attempt; a markup error resends as plain text once.
- When the last part of a job is recorded, the job becomes `sent` and the `on_delivered` hook
  runs; `recorded` after it returns. Jobs left `sent` are hooked again at start and periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from fastapi import APIRouter
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.backoff import backoff_delay
from app.config import Settings
from app.db import write
from app.delivery import store
from app.delivery.metrics import DeliveryMetrics
from app.delivery.pacing import Pacer, TokenBucket
from app.delivery.split import plan_parts
from app.delivery.store import PartRow
from app.logger import get_logger

log = get_logger(__name__)

# How many chats one process holds at once (each costs one head part in memory).
MAX_ACTIVE_CHATS = 1000
# Concurrent HTTP sends (across chats; one per chat at most).
MAX_IN_FLIGHT = 64
# Two different chats answered 429 within this window: the bot as a whole is flooding.
GLOBAL_FLOOD_WINDOW = 1.0
# Sends the bot-wide pacer lets go back to back after an idle moment (then 1/rate apart).
GLOBAL_BURST = 3
# Never send when our lease on the chat expires sooner than this (renewal may have stalled).
LEASE_SAFETY = 2.0


class TelegramAPI(Protocol):
    """What the engine needs from `app.telegram_client.TelegramClient`."""

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the client's interface
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DeliveredJob:
    """Given to `on_delivered` once every part of a job is sent."""

    job_id: int
    job_key: str
    chat_id: int
    message_ids: list[int]
    texts: list[str]
    history: dict[str, Any] | None
    sent_at: float
    #: An earlier run of the hook may have done its work before it died or failed: look first.
    maybe_done: bool = False


@dataclass(frozen=True)
class DeliveryResult:
    """What `wait` reports: the job's state and the ids of the messages sent so far.

    state: pending (still queued, or `wait` timed out), sent / recorded (delivered), parked
    (gave up after retries; re-sendable), failed (chat unreachable), skipped (chat was already
    unreachable), unknown (no such job).
    """

    job_key: str
    state: str
    message_ids: list[int]
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.state in ("sent", "recorded")


@dataclass
class _Chat:
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


def _error_text(exc: BaseException) -> str:
    desc = getattr(exc, "description", "") or exc.__class__.__name__
    code = getattr(exc, "code", None)
    return f"{code}: {desc}" if code is not None else str(desc)


class Delivery:
    """Durable, paced, ordered outbound messages. See the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        telegram: TelegramAPI,
        settings: Settings,
        registry: CollectorRegistry,
        owner: str,
        on_delivered: Callable[[DeliveredJob], Awaitable[None]] | None = None,
        *,
        max_active_chats: int = MAX_ACTIVE_CHATS,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.engine = engine
        self.telegram = telegram
        self.settings = settings
        self.owner = owner[:64]
        self.on_delivered = on_delivered
        self.registry = registry
        self.metrics = DeliveryMetrics(registry)
        self.max_active_chats = max_active_chats
        self.max_in_flight = max_in_flight
        s = settings
        # Telegram's "about 30 per second", evenly spaced with a burst of a few: Telegram's own
        # allowance for bunched requests stays unspent, so network and event-loop jitter never
        # push us over its edge (a third of a second's worth at once drew 429s from stand-ins).
        self._global = Pacer(s.RATE_GLOBAL_PER_SECOND, burst=GLOBAL_BURST)
        self._chats: dict[int, _Chat] = {}
        self._ready: deque[int] = deque()
        self._timers: list[_Timer] = []
        self._timer_seq = 0
        self._wake = asyncio.Event()
        self._in_flight = 0
        self._pause_until = 0.0  # monotonic; bot-wide flood wait
        self._recent_429: deque[tuple[float, int]] = deque()
        self._unreachable: set[int] = set()
        self._job_events: dict[str, asyncio.Event] = {}
        # Jobs this process enqueued that are not finished yet (what `drain` waits for).
        self._local_jobs: set[str] = set()
        self._drained = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._started = False
        self._last_refill = 0.0
        self._last_renew = 0.0
        self._last_hooks = 0.0
        self._hooks_running: set[int] = set()
        # Waiters read the database through a narrow gate: hundreds of them must not take the
        # connection pool away from the senders (which stalls sending for seconds).
        self._wait_reads = asyncio.Semaphore(2)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the database says (unreachable chats, jobs to hook) and start sending."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        async with self.engine.connect() as conn:
            self._unreachable = await store.unreachable_chats(conn)
        self._loop_task = asyncio.create_task(self._run(), name="delivery-scheduler")
        log.info("delivery started", extra={"owner": self.owner})

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not I/O
        """Keep sending until every job this process enqueued is finished, or `timeout`.

        Graceful shutdown calls this after the workers stopped: replies produced during the
        grace period go out now instead of waiting in the outbox for the next start. True when
        nothing of ours is left.
        """
        if not self._local_jobs:
            return True
        self._drained.clear()
        if not self._local_jobs:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout=max(timeout, 0.0))
        return not self._local_jobs

    async def stop(self, grace: float) -> None:
        """Stop taking parts; let in-flight sends (and their commits) finish within `grace`."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        pending = set(self._send_tasks) | set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(grace, 0.0))
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        # Let another replica (or our successor) take our chats immediately.
        with contextlib.suppress(Exception):
            async with self._tx() as conn:
                await store.release_chats(
                    conn, {c: self._pace(chat) for c, chat in self._chats.items()}, self.owner
                )
        self._chats.clear()
        self._ready.clear()
        self._timers.clear()
        self._started = False
        log.info("delivery stopped", extra={"owner": self.owner})

    # --- public API -------------------------------------------------------------------------

    async def enqueue(
        self,
        job_key: str,
        chat_id: int,
        text: str,
        *,
        parse_mode: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        reply_to_message_id: int | None = None,
        history: dict[str, Any] | None = None,
    ) -> None:
        """Queue a reply durably; a second call with the same `job_key` does nothing."""
        parts = plan_parts(
            text,
            parse_mode=parse_mode,
            reply_markup=reply_markup,
            reply_to_message_id=reply_to_message_id,
        )
        if not parts:
            raise ValueError("nothing to send: the text is empty")
        specs = [
            {
                "text": p.text,
                "parse_mode": p.parse_mode,
                "reply_markup": p.reply_markup,
                "reply_to_message_id": p.reply_to_message_id,
            }
            for p in parts
        ]
        async with self._tx() as conn:
            job_id = await store.insert_job(conn, job_key, chat_id, len(specs), history)
            if job_id is None:
                return
            unreachable = await store.ensure_chat(conn, chat_id)
            state = "skipped" if unreachable else "pending"
            await store.insert_parts(conn, job_id, chat_id, specs, state)
            if unreachable:
                await store.set_job_state(conn, job_id, "skipped", "chat is unreachable")
        if unreachable:
            log.info("reply skipped: chat unreachable", extra={"chat_id": chat_id})
            self._job_changed(job_key)
            return
        self.metrics.queued.inc(len(specs))
        self._local_jobs.add(job_key)
        await self._adopt([chat_id])

    async def wait(
        self,
        job_key: str,
        timeout: float | None = None,  # noqa: ASYNC109 - returns the state on timeout
    ) -> DeliveryResult:
        """Wait until the job is delivered or given up; on timeout, its current state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        event = self._job_events.setdefault(job_key, asyncio.Event())
        # Local state changes wake us at once. The poll only covers a job finished by another
        # replica, so it backs off (many waiters must not steal the senders' connections).
        poll = 0.25
        try:
            while True:
                event.clear()
                async with self._wait_reads, self.engine.connect() as conn:
                    status = await store.job_status(conn, job_key)
                if status is None:
                    return DeliveryResult(job_key, "unknown", [])
                state, ids, error = status
                if state in store.TERMINAL_JOB_STATES:
                    return DeliveryResult(job_key, state, ids, error)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return DeliveryResult(job_key, state, ids, error)
                step = poll if left is None else min(left, poll)
                poll = min(poll * 1.5, 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=max(step, 0.01))
        finally:
            if job_key in self._job_events and self._job_events[job_key] is event:
                del self._job_events[job_key]

    @contextlib.asynccontextmanager
    async def typing(self, chat_id: int) -> AsyncIterator[None]:
        """Show "typing..." in the chat while the block runs (best effort, never raises)."""
        task = asyncio.create_task(self._typing_loop(chat_id), name=f"typing-{chat_id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def mark_active(self, chat_id: int) -> None:
        """The user wrote again: the chat is reachable (clear a 403 / not-found mark)."""
        # Always ask the database, not only `_unreachable`: another replica may have set it.
        async with self._tx() as conn:
            cleared = await store.clear_unreachable(conn, chat_id)
        self._unreachable.discard(chat_id)
        if cleared:
            log.info("chat reachable again", extra={"chat_id": chat_id})

    async def prune(self, older_than_seconds: float) -> int:
        """Forget delivered jobs older than the retention (parked and failed ones are kept)."""
        async with self._tx() as conn:
            return await store.prune_finished(conn, time.time() - older_than_seconds)

    async def list_parked(self, limit: int = 200) -> list[dict[str, Any]]:
        """Parts that were not delivered (parked after retries, or failed permanently)."""
        async with self.engine.connect() as conn:
            return await store.list_problem_parts(conn, limit)

    async def resend(self, job_or_part_id: int | str) -> bool:
        """Queue parked/failed parts again: ``12`` or ``"job:12"`` or a job key, ``"part:34"``."""
        ref = str(job_or_part_id)
        async with self._tx() as conn:
            if ref.startswith("part:") and ref[5:].isdigit():
                found = await store.requeue(conn, part_id=int(ref[5:]))
            else:
                raw = ref[4:] if ref.startswith("job:") else ref
                job_id = int(raw) if raw.isdigit() else await store.job_id_for(conn, ref)
                found = None if job_id is None else await store.requeue(conn, job_id=job_id)
        if found is None:
            return False
        chat_id, _, job_key = found
        self._unreachable.discard(chat_id)
        log.info("resend requested", extra={"chat_id": chat_id, "job_key": job_key})
        self._job_changed(job_key)
        await self._adopt([chat_id])
        return True

    def router(self, require_admin: Callable[..., Any]) -> APIRouter:
        """Admin endpoints (listing and resend); see `app.delivery.admin`."""
        from app.delivery.admin import build_router

        return build_router(self, require_admin)

    # --- scheduler --------------------------------------------------------------------------

    async def _run(self) -> None:
        poll = self.settings.POLL_INTERVAL
        while not self._stopping:
            try:
                mono = time.monotonic()
                if mono - self._last_renew >= self.settings.LEASE_SECONDS / 3:
                    await self._renew()
                if mono - self._last_refill >= poll:
                    await self._refill()
                if mono - self._last_hooks >= max(poll, 1.0):
                    await self._sweep_hooks()
                await self._dispatch_ready()
                await self._sleep_until_next(poll)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery scheduler error; continuing")
                await asyncio.sleep(min(poll, 1.0))

    async def _sleep_until_next(self, poll: float) -> None:
        self._promote_timers()
        if self._ready and self._in_flight < self.max_in_flight:
            return
        delay = poll
        if self._timers:
            delay = min(delay, max(0.0, self._timers[0].at - time.monotonic()))
        if delay <= 0:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _schedule(self, chat: _Chat) -> None:
        """Put a chat in the ready ring or on the timer heap, according to its head."""
        at = chat.ready_at(time.monotonic(), time.time())
        if at == float("inf"):
            return
        if at <= time.monotonic():
            self._ready.append(chat.chat_id)
        else:
            self._timer_seq += 1
            heapq.heappush(self._timers, _Timer(at, self._timer_seq, chat.chat_id))
        self._wake.set()

    def _promote_timers(self) -> None:
        mono = time.monotonic()
        while self._timers and self._timers[0].at <= mono:
            timer = heapq.heappop(self._timers)
            if timer.chat_id in self._chats and timer.chat_id not in self._ready:
                self._ready.append(timer.chat_id)

    async def _dispatch_ready(self) -> None:
        """Round-robin over ready chats: one part per chat per turn, paced globally."""
        self._promote_timers()
        while self._ready and self._in_flight < self.max_in_flight and not self._stopping:
            chat_id = self._ready.popleft()
            chat = self._chats.get(chat_id)
            if chat is None:
                continue
            mono, wall = time.monotonic(), time.time()
            at = chat.ready_at(mono, wall)
            if at == float("inf"):
                continue
            if at > mono:
                self._timer_seq += 1
                heapq.heappush(self._timers, _Timer(at, self._timer_seq, chat_id))
                continue
            if chat.lease_until - wall < LEASE_SAFETY:
                self._last_renew = 0.0  # renew at the next turn, then try again
                self._timer_seq += 1
                heapq.heappush(self._timers, _Timer(mono + 0.2, self._timer_seq, chat_id))
                continue
            if self._pause_until > mono:
                self._ready.appendleft(chat_id)
                await asyncio.sleep(self._pause_until - mono)
                continue
            await self._global.acquire()
            if self._stopping:
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
            self._send_tasks.add(task)
            task.add_done_callback(self._send_tasks.discard)
            self._promote_timers()

    def _new_chat(self, chat_id: int) -> _Chat:
        s = self.settings
        group = None
        if chat_id < 0:
            # Groups: 20/min on top of the per-chat limit; a small burst, not a minute's worth.
            group = TokenBucket(s.RATE_GROUP_PER_MINUTE / 60.0, min(s.RATE_CHAT_BURST - 1, 2))
        # Same reasoning as the global limiter: keep one token of the chat's burst in reserve.
        burst = s.RATE_CHAT_BURST - 1 if s.RATE_CHAT_BURST > 1 else 1
        return _Chat(chat_id, TokenBucket(s.RATE_CHAT_PER_SECOND, burst), group)

    async def _adopt(self, chat_ids: list[int]) -> None:
        """Lease these chats (if free) and load their heads: work arrived for them."""
        if self._stopping or not self._started:
            return
        fresh: list[int] = []
        for cid in chat_ids:
            existing = self._chats.get(cid)
            if existing is not None:
                existing.recheck = True
                if existing.head is None and not existing.in_flight and not existing.releasing:
                    fresh.append(cid)
            elif len(self._chats) < self.max_active_chats:
                fresh.append(cid)
        if not fresh:
            return
        lease = self.settings.LEASE_SECONDS
        async with self._tx() as conn:
            held = await store.claim_chats(conn, fresh, self.owner, lease)
            heads = await store.heads(conn, held)
            saved = await store.paces(conn, [c for c in held if c not in self._chats])
        wall = time.time()
        until = wall + lease
        idle = []
        for cid in held:
            chat = self._chats.get(cid)
            if chat is None:
                chat = self._chats[cid] = self._new_chat(cid)
                pace = saved.get(cid)
                if pace is not None:
                    self._restore(chat, pace, wall)
            chat.lease_until = until
            if chat.in_flight or chat.releasing:
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
        chats = [self._chats[c] for c in chat_ids if c in self._chats]
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
                if self._chats.get(chat.chat_id) is chat:
                    del self._chats[chat.chat_id]
                if chat.recheck:
                    again.append(chat.chat_id)
            if again:
                await self._adopt(again)

    async def _refill(self) -> None:
        """Take more chats with pending work (bounded batch), e.g. from a dead replica."""
        self._last_refill = time.monotonic()
        room = self.max_active_chats - len(self._chats)
        if room <= 0:
            return
        async with self.engine.connect() as conn:
            ids = await store.claimable_chats(conn, min(room, 200), set(self._chats))
            pending = await store.count_pending(conn)
        self.metrics.queued.set(pending)
        if ids:
            await self._adopt(ids)

    async def _renew(self) -> None:
        self._last_renew = time.monotonic()
        ids = list(self._chats)
        if not ids:
            return
        lease = self.settings.LEASE_SECONDS
        async with self._tx() as conn:
            held = await store.renew_chats(conn, ids, self.owner, lease)
        until = time.time() + lease
        for cid in ids:
            chat = self._chats.get(cid)
            if chat is None:
                continue
            if cid in held:
                chat.lease_until = until
            elif not chat.in_flight:
                log.warning("chat lease lost to another process", extra={"chat_id": cid})
                del self._chats[cid]

    def _pace(self, chat: _Chat) -> store.Pace:
        wall, mono = time.time(), time.monotonic()
        tokens, at = chat.bucket.snapshot(wall)
        group = chat.group.snapshot(wall)[0] if chat.group is not None else None
        flood = wall + (chat.flood_until - mono) if chat.flood_until > mono else None
        return store.Pace(tokens, group, at, flood)

    def _restore(self, chat: _Chat, pace: store.Pace, wall: float) -> None:
        chat.bucket.restore(pace.tokens, pace.at, wall)
        if chat.group is not None:
            chat.group.restore(pace.group_tokens, pace.at, wall)
        if pace.flood_until is not None and pace.flood_until > wall:
            chat.flood_until = time.monotonic() + (pace.flood_until - wall)

    # --- sending ----------------------------------------------------------------------------

    def _params(self, chat: _Chat, part: PartRow) -> dict[str, Any]:
        params: dict[str, Any] = {"chat_id": chat.send_to or part.chat_id, "text": part.text}
        if part.parse_mode and not part.plain_fallback:
            params["parse_mode"] = part.parse_mode
        if part.reply_markup is not None:
            params["reply_markup"] = part.reply_markup
        if part.reply_to_message_id is not None:
            params["reply_parameters"] = {
                "message_id": part.reply_to_message_id,
                "allow_sending_without_reply": True,
            }
        return params

    async def _send(self, chat: _Chat, part: PartRow) -> None:
        next_head: PartRow | None = part
        try:
            next_head = await self._attempt(chat, part)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery send failed unexpectedly", extra={"part_id": part.id})
            next_head = part
        finally:
            chat.in_flight = False
            self._in_flight -= 1
            self._wake.set()
        await self._advance(chat, next_head)

    async def _advance(self, chat: _Chat, head: PartRow | None) -> None:
        """After a send: keep the same head (retry), or move to the chat's next pending part."""
        if self._chats.get(chat.chat_id) is not chat:
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

    async def _attempt(self, chat: _Chat, part: PartRow) -> PartRow | None:
        """Send one part and commit the outcome; the part to send next (None: load the next)."""
        params = self._params(chat, part)
        started = time.time()
        try:
            envelope = await self.telegram.call("sendMessage", params)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            return await self._transient(part, started, exc.__class__.__name__, "network")
        except Exception as exc:
            return await self._telegram_error(chat, part, started, exc)
        # Telegram has the message now. Until the commit below, a crash sends it again on
        # restart (the Bot API has no idempotency key), so nothing else happens in between and
        # the write goes ahead of every other waiting writer.
        answered = time.perf_counter()
        result = envelope.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        final = "sent" if self.on_delivered is not None else "recorded"
        async with self._tx(urgent=True) as conn:
            recorded, complete = await store.mark_sent(conn, part, message_id, final)
        self.metrics.record_seconds.observe(time.perf_counter() - answered)
        if not recorded:
            log.warning("part was already recorded by another process", extra={"part_id": part.id})
        self.metrics.sent.inc()
        self.metrics.queued.dec()
        if complete:
            self._job_changed(part.job_key)
            if self.on_delivered is not None:
                self._spawn(self._run_hook(part.job_id))
        return None

    async def _telegram_error(
        self, chat: _Chat, part: PartRow, started: float, exc: Exception
    ) -> PartRow | None:
        code = getattr(exc, "code", None)
        retry_after = getattr(exc, "retry_after", None)
        if getattr(exc, "is_rate_limited", False):
            self._on_429(chat, float(retry_after or 1.0))
            return part
        migrate = getattr(exc, "migrate_to_chat_id", None)
        if isinstance(migrate, int) and chat.send_to != migrate:
            log.info("group migrated; sending to the supergroup", extra={"chat_id": chat.chat_id})
            chat.send_to = migrate
            return part
        if getattr(exc, "is_parse_error", False) and part.parse_mode and not part.plain_fallback:
            log.warning(
                "markup rejected; resending as plain text",
                extra={"chat_id": part.chat_id, "part_id": part.id, "parse_mode": part.parse_mode},
            )
            self.metrics.plain_fallback.inc()
            async with self._tx() as conn:
                await store.set_plain_fallback(conn, part.id)
            return _replace(part, plain_fallback=True)
        if getattr(exc, "is_transient", code is None or (code or 0) >= 500):
            reason = "timeout" if code is None else "server_error"
            return await self._transient(part, started, _error_text(exc), reason)
        if getattr(exc, "is_chat_unreachable", code == 403):
            await self._chat_unreachable(part, _error_text(exc))
            return None
        # Another 4xx: this message cannot be sent as it is (bad keyboard, too long...).
        error = _error_text(exc)
        log.error(
            "message refused by Telegram; parked",
            extra={"chat_id": part.chat_id, "part_id": part.id, "error": error},
        )
        self.metrics.permanently_failed.labels("bad_request").inc()
        async with self._tx() as conn:
            await store.park_job_from(conn, part, "parked", error)
        self._job_changed(part.job_key)
        return None

    def _on_429(self, chat: _Chat, retry_after: float) -> None:
        """Honour retry_after: for this chat, or for everything if the bot as a whole floods."""
        mono = time.monotonic()
        window = self._recent_429
        while window and mono - window[0][0] > GLOBAL_FLOOD_WINDOW:
            window.popleft()
        window.append((mono, chat.chat_id))
        bot_wide = len({c for _, c in window}) >= 2
        chat.flood_until = max(chat.flood_until, mono + retry_after)
        if bot_wide:
            self._pause_until = max(self._pause_until, mono + retry_after)
        scope = "bot" if bot_wide else "chat"
        self.metrics.rate_limited.labels(scope).inc()
        log.warning(
            "telegram flood wait",
            extra={"chat_id": chat.chat_id, "retry_after": retry_after, "scope": scope},
        )

    async def _transient(
        self, part: PartRow, started: float, error: str, reason: str
    ) -> PartRow | None:
        s = self.settings
        attempts = part.attempts + 1
        first = part.first_attempt_at or started
        delay = backoff_delay(attempts, s.RETRY_BASE_DELAY, s.RETRY_MAX_DELAY, jitter=(0.5, 1.0))
        next_at = time.time() + delay
        if attempts >= s.SEND_MAX_ATTEMPTS or next_at - first > s.SEND_MAX_SECONDS:
            log.error(
                "giving up on part after retries; parked",
                extra={
                    "chat_id": part.chat_id,
                    "part_id": part.id,
                    "attempts": attempts,
                    "error": error,
                },
            )
            self.metrics.parked.inc()
            async with self._tx() as conn:
                await store.schedule_retry(conn, part.id, attempts, first, next_at, error)
                await store.park_job_from(conn, part, "parked", error)
            self._job_changed(part.job_key)
            return None
        log.warning(
            "send failed; will retry",
            extra={
                "chat_id": part.chat_id,
                "part_id": part.id,
                "attempt": attempts,
                "retry_in": round(delay, 3),
                "error": error,
            },
        )
        self.metrics.retried.labels(reason).inc()
        async with self._tx() as conn:
            await store.schedule_retry(conn, part.id, attempts, first, next_at, error)
        return _replace(part, attempts=attempts, first_attempt_at=first, next_attempt_at=next_at)

    async def _chat_unreachable(self, part: PartRow, error: str) -> None:
        log.warning(
            "chat unreachable; its replies are skipped until the user writes again",
            extra={"chat_id": part.chat_id, "error": error},
        )
        reason = "blocked" if error.startswith("403") else "chat_not_found"
        self.metrics.permanently_failed.labels(reason).inc()
        async with self._tx() as conn:
            keys = await store.mark_chat_unreachable(conn, part.chat_id, error)
        self._unreachable.add(part.chat_id)
        for key in {*keys, part.job_key}:
            self._job_changed(key)

    # --- hook -------------------------------------------------------------------------------

    async def _sweep_hooks(self) -> None:
        self._last_hooks = time.monotonic()
        if self.on_delivered is None:
            return
        async with self.engine.connect() as conn:
            ids = await store.due_hooks(conn, 50)
        for job_id in ids:
            if job_id not in self._hooks_running:
                self._spawn(self._run_hook(job_id))

    @property
    def _hook_lease(self) -> float:
        """Long enough for a hook's calls (a lookup and a write) to time out inside it."""
        s = self.settings
        return s.LEASE_SECONDS + 3 * s.REQUEST_TIMEOUT

    async def _run_hook(self, job_id: int) -> None:
        """Run `on_delivered` for a job once, whichever process or sweep gets to it first."""
        if self.on_delivered is None or job_id in self._hooks_running:
            return
        self._hooks_running.add(job_id)
        try:
            await self._hook_once(job_id, self.on_delivered)
        finally:
            self._hooks_running.discard(job_id)

    async def _hook_once(
        self, job_id: int, hook: Callable[[DeliveredJob], Awaitable[None]]
    ) -> None:
        lease = self._hook_lease
        async with self._tx() as conn:
            data = await store.claim_hook(conn, job_id, self.owner, lease)
        if data is None:
            return
        job = DeliveredJob(
            job_id=data["job_id"],
            job_key=data["job_key"],
            chat_id=data["chat_id"],
            message_ids=data["message_ids"],
            texts=data["texts"],
            history=data["history"],
            sent_at=data["sent_at"],
            maybe_done=data["maybe_done"],
        )
        try:
            # Never outlive the lease: past it, another process may run the same hook.
            async with asyncio.timeout(lease - self.settings.LEASE_SECONDS / 2):
                await hook(job)
        except Exception as exc:
            attempts = data["hook_attempts"] + 1
            s = self.settings
            delay = backoff_delay(attempts, s.RETRY_BASE_DELAY, s.RETRY_MAX_DELAY)
            log.warning(
                "on_delivered hook failed; will retry",
                extra={"job_key": job.job_key, "attempt": attempts, "error": repr(exc)[:200]},
            )
            self.metrics.hook_failures.inc()
            async with self._tx() as conn:
                await store.fail_hook(conn, job_id, attempts, time.time() + delay, repr(exc)[:500])
            return
        async with self._tx() as conn:
            await store.finish_hook(conn, job_id, self.owner)
        self._job_changed(job.job_key)

    # --- typing -----------------------------------------------------------------------------

    async def _typing_loop(self, chat_id: int) -> None:
        """sendChatAction every TYPING_INTERVAL; skipped during flood waits, errors ignored.

        Typing does not take message budget (Telegram's limits are on messages; the action
        is not a message), but it is not sent while the chat or the bot is in a flood wait.
        """
        interval = self.settings.TYPING_INTERVAL
        while True:
            mono = time.monotonic()
            chat = self._chats.get(chat_id)
            flooded = self._pause_until > mono or (chat is not None and chat.flood_until > mono)
            if chat_id not in self._unreachable and not flooded:
                try:
                    await self.telegram.call(
                        "sendChatAction",
                        {"chat_id": chat_id, "action": "typing"},
                        timeout=min(interval, self.settings.REQUEST_TIMEOUT),
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("typing failed", extra={"chat_id": chat_id, "error": repr(exc)})
            await asyncio.sleep(interval)

    # --- helpers ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _tx(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction through the database's write gate (`app.db.write`): on SQLite
        writers queue there instead of in SQLite's busy handler, whose sleeps (up to 100 ms per
        retry) would cut the send rate by half and widen the re-send window after a crash."""
        async with write(self.engine, urgent=urgent) as conn:
            yield conn

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def runner() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery background task failed")

        task = asyncio.create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _job_changed(self, job_key: str) -> None:
        self._local_jobs.discard(job_key)
        if not self._local_jobs:
            self._drained.set()
        event = self._job_events.get(job_key)
        if event is not None:
            event.set()


def _replace(part: PartRow, **changes: Any) -> PartRow:
    import dataclasses

    return dataclasses.replace(part, **changes)
