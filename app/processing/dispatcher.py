"""The dispatcher: claims chat heads from the inbox and runs them, a bounded number at once.

Ordering comes from the inbox (`Inbox.claim` only hands out the oldest unfinished update of
each chat), so the dispatcher only has to bound concurrency (`WORKER_CONCURRENCY` chats at
once), keep its leases alive, sort failures, and stop cleanly.

- Wake-ups: the ingest writer calls `wake()` after each commit, so a new update starts within
  milliseconds; a poll every `POLL_INTERVAL` seconds catches due retries, expired leases of dead
  workers and rows written by other replicas.
- Leases are renewed every third of `LEASE_SECONDS` while work is in flight, so a five-minute
  agent call is not taken for a dead worker; a killed process stops renewing, and after
  `LEASE_SECONDS` its updates are claimed again (by this process after a restart, or a replica).
- Failures: `app.errors.classify` gives the verdict. An outage (or being rate limited) retries
  with back-off and never makes an update dead; a failure counts an attempt, and after
  `MAX_ATTEMPTS` the update is set aside as dead (kept, logged, listed by `GET /admin/dead`) so
  that it does not block its chat forever; a permanent error (retrying cannot help) is dead at
  once.
- Every update ends with one canonical log line, `update_processed`: outcome, steps run,
  duration.
- `stop(grace)`: stop claiming, let in-flight updates finish within `grace` seconds, then cancel
  the rest and release their leases so the next start resumes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from app.backoff import backoff_delay
from app.errors import Verdict, classify, retry_after
from app.logger import bind_correlation, get_logger
from app.metrics import Metrics
from app.processing.pipeline import Outcome
from app.processing.progress import load, note_outage
from app.storage.inbox import DEAD, Inbox, InboxItem

log = get_logger(__name__)


class Dispatcher:
    def __init__(
        self,
        inbox: Inbox,
        handler: Callable[[InboxItem], Awaitable[Outcome]],
        metrics: Metrics,
        *,
        concurrency: int,
        poll_interval: float,
        lease_seconds: float,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
    ) -> None:
        self.inbox = inbox
        self.handler = handler
        self.metrics = metrics
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")
        self._renew_task = asyncio.create_task(self._renew_loop(), name="lease-renewer")

    async def stop(self, grace: float) -> None:
        self._stopping = True
        self._wake.set()
        for task in (self._loop_task, self._renew_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        running = list(self._running.values())
        if running:
            log.info("waiting for in-flight updates", extra={"count": len(running), "grace": grace})
            _, pending = await asyncio.wait(running, timeout=grace)
            if pending:
                seqs = [seq for seq, task in self._running.items() if task in pending]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                # Leave them for the next start (or another replica) without counting a failure.
                await self.inbox.release(seqs)
                log.warning("left unfinished updates in the inbox", extra={"count": len(seqs)})

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._running)
            if free > 0:
                try:
                    items = await self.inbox.claim(free)
                except Exception as exc:
                    log.error("claiming from the inbox failed", extra={"error": repr(exc)})
                    items = []
                for item in items:
                    task = asyncio.create_task(self._run(item), name=f"update-{item.update_id}")
                    self._running[item.seq] = task
                if items and len(items) == free:
                    continue  # there may be more due work; loop again once a slot frees
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _renew_loop(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            if self._running:
                try:
                    await self.inbox.renew(list(self._running))
                except Exception as exc:
                    log.error("lease renewal failed", extra={"error": repr(exc)})

    async def _run(self, item: InboxItem) -> None:
        try:
            with bind_correlation(item.update_id):
                await self._handle(item)
        finally:
            self._running.pop(item.seq, None)
            self._wake.set()

    async def _handle(self, item: InboxItem) -> None:
        started = time.perf_counter()
        try:
            outcome = await self.handler(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(item, exc, started)
            return
        if outcome.defer_until is not None:
            # A turn waiting for more of its messages: back to the inbox until then.
            await self.inbox.defer(item.seq, outcome.defer_until)
            delay = max(0.0, outcome.defer_until - time.time()) + 0.01
            asyncio.get_running_loop().call_later(delay, self.wake)
            log.debug(
                "turn waiting for more messages",
                extra={"event": "turn_waiting", "note": outcome.note, "due_in": round(delay, 3)},
            )
            return
        await self.inbox.finish(item.seq, outcome.state, outcome.note)
        self.metrics.updates_processed.labels(outcome.state).inc()
        log.info(
            "update processed",
            extra={
                "event": "update_processed",
                "outcome": outcome.state,
                "note": outcome.note,
                "kind": item.kind,
                "steps": outcome.steps,
                "attempt": item.attempts + 1,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    async def _failed(self, item: InboxItem, exc: Exception, started: float) -> None:
        reason = f"{exc.__class__.__name__}: {exc}"
        verdict = classify(exc)
        waiting = verdict in (Verdict.OUTAGE, Verdict.RATE_LIMITED)
        self.metrics.update_failures.labels("outage" if waiting else "error").inc()
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        if waiting:
            progress = load(item.progress)
            waits = note_outage(progress)
            delay = retry_after(exc) or self._backoff(waits)
            await self.inbox.save_progress(item.seq, dict(progress))
            await self.inbox.retry_later(item.seq, delay, reason, count=False)
            log.warning(
                "dependency unavailable; update will be retried",
                extra={
                    "event": "update_deferred",
                    "verdict": verdict.value,
                    "error": reason,
                    "retry_in": round(delay, 2),
                    "duration_ms": duration_ms,
                },
            )
            return
        attempts = item.attempts + 1
        if verdict is Verdict.PERMANENT or attempts >= self.max_attempts:
            await self.inbox.finish(item.seq, DEAD, reason)
            self.metrics.updates_processed.labels(DEAD).inc()
            log.error(
                "update set aside as dead",
                extra={
                    "event": "update_processed",
                    "outcome": DEAD,
                    "verdict": verdict.value,
                    "kind": item.kind,
                    "attempt": attempts,
                    "error": reason,
                    "duration_ms": duration_ms,
                },
                exc_info=exc,
            )
            return
        delay = self._backoff(attempts)
        await self.inbox.retry_later(item.seq, delay, reason, count=True)
        log.warning(
            "update failed; will retry",
            extra={
                "event": "update_failed",
                "verdict": verdict.value,
                "attempt": attempts,
                "retry_in": round(delay, 2),
                "error": reason,
                "duration_ms": duration_ms,
            },
            exc_info=exc,
        )

    def _backoff(self, n: int) -> float:
        return backoff_delay(n, self.base_delay, self.max_delay, jitter=(0.75, 1.25))
