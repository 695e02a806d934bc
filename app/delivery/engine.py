"""`Delivery`: durable queue in, paced and ordered Telegram sends out (docs/delivery.md).

A facade over four roles, each in its own module:

- the outbox (`store`): `enqueue` splits a reply into parts (`split`) and writes the job and its
  parts in one transaction, idempotent on `job_key`;
- the `Scheduler`: chat leases, pacing, the round-robin over ready chats;
- the `Sender`: one Telegram call and the commit of its outcome;
- the `HookRunner`: `on_delivered`, once per job, whoever sweeps;
- `ChatActions`: "typing…" while the agent works.

This module wires them and keeps what callers see: `enqueue`, `wait` (until a job is delivered
or given up; `process_message_flow` uses it to keep the original "send, then return"), `drain`
(graceful shutdown), `typing`, `mark_active`, and the operator's `list_parked` / `resend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.delivery import store
from app.delivery.chat_actions import ChatActions
from app.delivery.config import DeliveryConfig
from app.delivery.hooks import DeliveredJob, Hook, HookRunner
from app.delivery.lane import SendJournal, SendLane, TelegramFactory, journal_path
from app.delivery.metrics import DeliveryMetrics
from app.delivery.ports import TelegramAPI
from app.delivery.previews import Previews
from app.delivery.recorder import Recorder
from app.delivery.scheduler import Scheduler
from app.delivery.sender import Sender, SendOutcome
from app.delivery.split import plan_parts
from app.delivery.states import TERMINAL_JOB_STATES, JobState, PartState
from app.logger import get_logger
from app.storage.engine import is_sqlite, write

log = get_logger(__name__)

#: Journal entries are applied to the outbox within milliseconds; keep them this long anyway.
JOURNAL_KEEP_SECONDS = 60.0


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
        return self.state in (JobState.SENT, JobState.RECORDED)


class _JobWatch:
    """Local notice of job changes: wakes `wait`ers at once, tells `drain` when it is done."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        #: Jobs this process enqueued that are not finished yet (what `drain` waits for).
        self.local: set[str] = set()
        self.drained = asyncio.Event()

    def changed(self, job_key: str) -> None:
        self.local.discard(job_key)
        if not self.local:
            self.drained.set()
        event = self.events.get(job_key)
        if event is not None:
            event.set()


class Delivery:
    """Durable, paced, ordered outbound messages. See the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        telegram: TelegramAPI,
        config: DeliveryConfig,
        registry: CollectorRegistry,
        owner: str,
        on_delivered: Hook | None = None,
        *,
        lane_telegram: TelegramFactory | None = None,
    ) -> None:
        """`lane_telegram` builds the Telegram client of the send lane (`lane.py`), the
        production set-up; without it sends run on the caller's loop with `telegram` (tests
        that hand in a stand-in object)."""
        self.engine = engine
        self.config = config
        self.owner = owner[:64]
        self.registry = registry
        self.metrics = DeliveryMetrics(registry)
        self._jobs = _JobWatch()
        self.recorder = Recorder(engine)
        self.lane: SendLane | None = None
        if lane_telegram is not None:
            database = engine.url.database if is_sqlite(engine) else None
            path = journal_path(database) if is_sqlite(engine) else None
            if not is_sqlite(engine) or path is not None:
                journal = SendJournal(path) if path is not None else None
                self.lane = SendLane(lane_telegram, engine.url, journal=journal)
        self.sender = Sender(
            telegram,
            config,
            self.metrics,
            self._tx,
            self.recorder,
            hooks_wanted=on_delivered is not None,
            lane=self.lane,
        )
        self.hooks = (
            None
            if on_delivered is None
            else HookRunner(
                engine,
                on_delivered,
                config,
                self.metrics,
                self._tx,
                self.owner,
                on_recorded=self._jobs.changed,
            )
        )
        self.scheduler = Scheduler(
            engine,
            self.sender,
            config,
            self.metrics,
            self._tx,
            self.owner,
            on_outcome=self._after_send,
            periodic=self._periodic,
        )
        self.actions = ChatActions(telegram, config, quiet=self._quiet)
        self.previews = Previews(telegram, self.scheduler)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._journal_pruned = time.monotonic()
        # Waiters read the database through a narrow gate: hundreds of them must not take the
        # connection pool away from the senders (which stalls sending for seconds).
        self._wait_reads = asyncio.Semaphore(2)

    @property
    def telegram(self) -> TelegramAPI:
        return self.sender.telegram

    @telegram.setter
    def telegram(self, value: TelegramAPI) -> None:
        self.sender.telegram = value
        self.actions.telegram = value
        self.previews.telegram = value

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the database says (unreachable chats, jobs to hook) and start sending."""
        s = self.scheduler
        if s.started:
            return
        s.started, s.stopping = True, False
        if self.lane is not None:
            self.lane.start()
            await self._replay_journal()
        async with self.engine.connect() as conn:
            s.unreachable = await store.unreachable_chats(conn)
        self._loop_task = asyncio.create_task(s.run(), name="delivery-scheduler")
        log.info("delivery started", extra={"owner": self.owner})

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not I/O
        """Keep sending until every job this process enqueued is finished, or `timeout`.

        Graceful shutdown calls this after the workers stopped: replies produced during the
        grace period go out now instead of waiting in the outbox for the next start. True when
        nothing of ours is left.
        """
        jobs = self._jobs
        if not jobs.local:
            return True
        jobs.drained.clear()
        if not jobs.local:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(jobs.drained.wait(), timeout=max(timeout, 0.0))
        return not jobs.local

    async def stop(self, grace: float) -> None:
        """Stop taking parts; let in-flight sends (and their commits) finish within `grace`."""
        s = self.scheduler
        s.stopping = True
        s.wake()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        pending = set(s.send_tasks) | set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(grace, 0.0))
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        await s.release_all()  # another replica (or our successor) takes our chats at once
        await s.pacer.aclose()
        await self.recorder.close()
        if self.lane is not None:
            await self.lane.stop()
        s.started = False
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
        edit_message_id: int | None = None,
        business_connection_id: str | None = None,
    ) -> None:
        """Queue a reply durably; a second call with the same `job_key` does nothing.

        `edit_message_id`: the reply's first part is written over that message (a streamed
        reply's preview) instead of being sent as a new one; the other parts follow it.
        `business_connection_id`: answer a Telegram Business chat through its connection.
        """
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
                "edit_message_id": edit_message_id if n == 0 else None,
                "business_connection_id": business_connection_id,
            }
            for n, p in enumerate(parts)
        ]
        async with self._tx() as conn:
            job_id = await store.insert_job(conn, job_key, chat_id, len(specs), history)
            if job_id is None:
                return
            unreachable = await store.ensure_chat(conn, chat_id)
            state = PartState.SKIPPED if unreachable else PartState.PENDING
            await store.insert_parts(conn, job_id, chat_id, specs, state)
            if unreachable:
                await store.set_job_state(conn, job_id, JobState.SKIPPED, "chat is unreachable")
        if unreachable:
            log.info("reply skipped: chat unreachable", extra={"chat_id": chat_id})
            self._jobs.changed(job_key)
            return
        self.metrics.queued.inc(len(specs))
        self._jobs.local.add(job_key)
        await self.scheduler.adopt([chat_id])

    async def wait(
        self,
        job_key: str,
        timeout: float | None = None,  # noqa: ASYNC109 - returns the state on timeout
    ) -> DeliveryResult:
        """Wait until the job is delivered or given up; on timeout, its current state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        event = self._jobs.events.setdefault(job_key, asyncio.Event())
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
                if state in TERMINAL_JOB_STATES:
                    return DeliveryResult(job_key, state, ids, error)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return DeliveryResult(job_key, state, ids, error)
                step = poll if left is None else min(left, poll)
                poll = min(poll * 1.5, 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=max(step, 0.01))
        finally:
            if self._jobs.events.get(job_key) is event:
                del self._jobs.events[job_key]

    def typing(
        self, chat_id: int, business_connection_id: str | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Show "typing..." in the chat while the block runs (best effort, never raises)."""
        return self.actions.typing(chat_id, business_connection_id)

    async def mark_active(self, chat_id: int) -> None:
        """The user wrote again: the chat is reachable (clear a 403 / not-found mark)."""
        # Always ask the database, not only our set: another replica may have set the mark.
        async with self._tx() as conn:
            cleared = await store.clear_unreachable(conn, chat_id)
        self.scheduler.unreachable.discard(chat_id)
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
            part_id = _decimal(ref.removeprefix("part:")) if ref.startswith("part:") else None
            if part_id is not None:
                found = await store.requeue(conn, part_id=part_id)
            else:
                job_id = _decimal(ref.removeprefix("job:"))
                if job_id is None:
                    job_id = await store.job_id_for(conn, ref)
                found = None if job_id is None else await store.requeue(conn, job_id=job_id)
        if found is None:
            return False
        chat_id, _, job_key = found
        self.scheduler.unreachable.discard(chat_id)
        log.info("resend requested", extra={"chat_id": chat_id, "job_key": job_key})
        self._jobs.changed(job_key)
        await self.scheduler.adopt([chat_id])
        return True

    # --- wiring ---------------------------------------------------------------------------

    async def _replay_journal(self) -> None:
        """SQLite: parts the lane journalled before a crash are sent; record them first."""
        lane = self.lane
        if lane is None or lane.journal is None:
            return
        final = JobState.SENT if self.hooks is not None else JobState.RECORDED
        entries = lane.journal.entries()
        recorded = 0
        async with self._tx() as conn:
            for part_id, job_id, message_id, _ in entries:
                done, _complete = await store.mark_sent_ids(
                    conn, part_id, job_id, message_id, final
                )
                recorded += int(done)
        lane.journal.forget(time.time() + 1)
        if recorded:
            log.warning(
                "recorded sends found in the journal after a crash",
                extra={"event": "journal_replayed", "parts": recorded},
            )

    def _quiet(self, chat_id: int) -> bool:
        return chat_id in self.scheduler.unreachable or self.scheduler.flooded(chat_id)

    async def _after_send(self, outcome: SendOutcome) -> None:
        for key in outcome.changed:
            self._jobs.changed(key)
        if outcome.completed is not None:
            self._jobs.changed(outcome.completed)
            if self.hooks is not None and outcome.completed_job is not None:
                self._spawn(self.hooks.run(outcome.completed_job))

    async def _periodic(self) -> None:
        """About once a second, from the scheduler's loop: due hooks, and the journal's tail."""
        if self.hooks is not None:
            for job_id in await self.hooks.sweep():
                self._spawn(self.hooks.run(job_id))
        lane = self.lane
        if lane is not None and lane.journal is not None:
            now = time.monotonic()
            if now - self._journal_pruned > JOURNAL_KEEP_SECONDS:
                self._journal_pruned = now
                journal = lane.journal

                async def forget() -> None:
                    journal.forget(time.time() - JOURNAL_KEEP_SECONDS)

                await lane.call(forget)

    @contextlib.asynccontextmanager
    async def _tx(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction through the database's write gate (`app.storage.engine.write`):
        on SQLite writers queue there instead of in SQLite's busy handler, whose sleeps (up to
        100 ms per retry) would cut the send rate by half and widen the re-send window."""
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


def _decimal(text: str) -> int | None:
    """An id typed by an operator: ASCII digits only ("²".isdigit() is True), within BIGINT."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= 2**63 - 1 else None


__all__ = ["DeliveredJob", "Delivery", "DeliveryResult", "TelegramAPI"]
