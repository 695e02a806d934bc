"""The delivered hook: once every part of a job is sent, `on_delivered` runs, once.

The gateway's hook writes the outbound history row (`app.processing.history`). It runs right
after the last part is recorded, and a periodic sweep picks up jobs whose hook did not finish
(it failed, or the process died). Exactly once, whoever sweeps:

- a job's hook is claimed with a lease (`store.claim_hook`), taken only when free or expired,
  by anyone, this process included; a process never starts a hook it is already running;
- the hook runs under a timeout shorter than its lease, so nobody can take the job over while
  it still runs;
- a hook that runs again after a crash or a failure is told so (`DeliveredJob.maybe_done`): an
  earlier run may have done its work before it died, so it must look before it writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.backoff import backoff_delay
from app.delivery import store
from app.delivery.config import DeliveryConfig
from app.delivery.metrics import DeliveryMetrics
from app.logger import get_logger

log = get_logger(__name__)

Transaction = Callable[..., AbstractAsyncContextManager[AsyncConnection]]


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


Hook = Callable[[DeliveredJob], Awaitable[None]]


class HookRunner:
    """Runs `hook` for delivered jobs (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        hook: Hook,
        config: DeliveryConfig,
        metrics: DeliveryMetrics,
        transaction: Transaction,
        owner: str,
        *,
        on_recorded: Callable[[str], None],
    ) -> None:
        self.engine = engine
        self.hook = hook
        self.config = config
        self.metrics = metrics
        self._tx = transaction
        self.owner = owner
        self._on_recorded = on_recorded
        self.running: set[int] = set()

    async def sweep(self) -> list[int]:
        """Job ids whose hook is due (new, failed earlier, or left by a dead process)."""
        async with self.engine.connect() as conn:
            ids = await store.due_hooks(conn, 50)
        return [job_id for job_id in ids if job_id not in self.running]

    async def run(self, job_id: int) -> None:
        """Run the hook for a job once, whichever process or sweep gets to it first."""
        if job_id in self.running:
            return
        self.running.add(job_id)
        try:
            await self._run_once(job_id)
        finally:
            self.running.discard(job_id)

    async def _run_once(self, job_id: int) -> None:
        lease = self.config.hook_lease
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
            async with asyncio.timeout(lease - self.config.lease_seconds / 2):
                await self.hook(job)
        except Exception as exc:
            attempts = data["hook_attempts"] + 1
            c = self.config
            delay = backoff_delay(attempts, c.retry_base_delay, c.retry_max_delay)
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
        self._on_recorded(job.job_key)
