"""`Gateway`: everything one running gateway process holds, built from a `Settings` object.

The app factory creates one `Gateway` per app and starts/stops it with the lifespan. Nothing
here is global: tests build as many gateways as they like. The original module-level functions
(`send_message`, `log_interaction`, `flush_retries`, ...) reach the running gateway's objects
through `install_defaults`, which the lifespan calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from sqlalchemy import text

from app import agent_client, storage_retry, telegram_client, user_client
from app.agent_client import AgentClient
from app.callback_acker import CallbackAcker
from app.config import Settings
from app.db import create_schema, make_engine
from app.delivery import Delivery
from app.inbox import Inbox, NewUpdate
from app.ingest import IngestBatcher
from app.keyboards import SqlCallbackStore
from app.logger import get_logger
from app.metrics import Metrics
from app.pipeline import Pipeline
from app.poller import Poller
from app.storage_retry import RetryQueue
from app.telegram_client import TelegramClient
from app.user_client import UserServiceClient
from app.workers import Dispatcher

log = get_logger(__name__)


def make_owner_id() -> str:
    """Lease owner name: host, pid and a random suffix (a restarted pid is a new owner)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Gateway:
    def __init__(self, settings: Settings, *, owner: str | None = None) -> None:
        self.settings = settings
        self.owner = owner or make_owner_id()
        self.metrics = Metrics()
        self.engine = make_engine(
            settings.DATABASE_URL, sqlite_synchronous=settings.SQLITE_SYNCHRONOUS
        )
        self.inbox = Inbox(self.engine, owner=self.owner, lease_seconds=settings.LEASE_SECONDS)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self.telegram_http = httpx.AsyncClient(limits=limits)
        self.users_http = httpx.AsyncClient(limits=limits)
        self.agent_http = httpx.AsyncClient(limits=limits)
        self.telegram = TelegramClient(
            self.telegram_http,
            settings.BOT_TOKEN,
            base=settings.TELEGRAM_API_BASE,
            timeout=settings.REQUEST_TIMEOUT,
        )
        self.users = UserServiceClient(
            self.users_http,
            settings.USER_SERVICE_BASE,
            api_key=settings.USER_SERVICE_API_KEY,
            timeout=settings.REQUEST_TIMEOUT,
        )
        self.agent = AgentClient(
            self.agent_http,
            settings.AGENT_SERVICE_BASE,
            timeout=settings.agent_timeout,
            api_key=settings.AGENT_SERVICE_API_KEY,
        )
        self.callbacks = SqlCallbackStore(self.engine)
        self.retry_queue = RetryQueue(
            self.engine, self.users, self.metrics, base_delay=settings.RETRY_BASE_DELAY
        )
        self.acker = CallbackAcker(self.telegram)
        self.delivery = Delivery(
            self.engine,
            self.telegram,
            settings,
            registry=self.metrics.registry,
            owner=self.owner,
            on_delivered=self._on_delivered,
        )
        self.pipeline = Pipeline(
            inbox=self.inbox,
            users=self.users,
            agent=self.agent,
            telegram=self.telegram,
            delivery=self.delivery,
            callbacks=self.callbacks,
            retry_queue=self.retry_queue,
            metrics=self.metrics,
            history_size=settings.HISTORY_CONTEXT_SIZE,
            already_answered=self.acker.was_answered,
        )
        self.dispatcher = Dispatcher(
            self.inbox,
            self.pipeline.process,
            self.metrics,
            concurrency=settings.WORKER_CONCURRENCY,
            poll_interval=settings.POLL_INTERVAL,
            lease_seconds=settings.LEASE_SECONDS,
            max_attempts=settings.MAX_ATTEMPTS,
            base_delay=settings.RETRY_BASE_DELAY,
            max_delay=settings.RETRY_MAX_DELAY,
        )
        self.batcher: IngestBatcher | None = None
        self._loops: list[asyncio.Task[None]] = []
        self.started = False

    async def _on_delivered(self, job: object) -> None:
        await self.pipeline.on_delivered(job)

    def _after_commit(self, rows: list[NewUpdate]) -> None:
        self.dispatcher.wake()
        self.acker.on_commit(rows)

    async def start(self) -> None:
        s = self.settings
        await create_schema(self.engine)
        self.batcher = IngestBatcher(
            self.inbox,
            on_commit=self._after_commit,
            on_batch=self.metrics.ingest_batch_size.observe,
        )
        self.batcher.start()
        self.acker.start()
        if s.PROCESSING_ENABLED:
            await self.delivery.start()
            self.dispatcher.start()
            self._loop(self._flush_loop, "retry-flusher")
        self._loop(self._housekeeping_loop, "housekeeping")
        if s.UPDATE_MODE == "polling":
            poller = Poller(self.telegram, self.inbox, on_commit=self._after_commit)
            self._loop(poller.run, "poller")
        elif s.WEBHOOK_URL:
            self._loop(self._register_webhook, "set-webhook")
        self.started = True
        log.info(
            "gateway started",
            extra={
                "owner": self.owner,
                "database": self.engine.dialect.name,
                "processing": s.PROCESSING_ENABLED,
                "updates": s.UPDATE_MODE,
                "agent": "configured" if s.AGENT_SERVICE_BASE else "built-in fallback",
            },
        )

    def _loop(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._loops.append(asyncio.create_task(fn(), name=name))

    async def stop(self) -> None:
        """Graceful: refuse new updates, finish in-flight work within the grace period."""
        grace = self.settings.SHUTDOWN_GRACE_SECONDS
        log.info("gateway stopping", extra={"grace": grace})
        self.started = False
        if self.batcher is not None:
            await self.batcher.stop()
        deadline = asyncio.get_running_loop().time() + grace
        await self.dispatcher.stop(grace)
        # Replies the last updates produced go out within what is left of the grace period.
        left = deadline - asyncio.get_running_loop().time()
        if not await self.delivery.drain(left):
            log.warning("replies left in the outbox for the next start")
        await self.delivery.stop(max(1.0, deadline - asyncio.get_running_loop().time()))
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()
        await self.acker.stop()
        for client in (self.telegram_http, self.users_http, self.agent_http):
            await client.aclose()
        await self.engine.dispose()
        log.info("gateway stopped")

    async def ready(self) -> bool:
        """True when the gateway's own database answers (used by `GET /ready`)."""
        try:
            async with asyncio.timeout(2):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return self.started

    async def _flush_loop(self) -> None:
        while True:
            try:
                await self.retry_queue.flush()
            except Exception as exc:
                log.error("retry queue flush failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.settings.RETRY_FLUSH_INTERVAL)

    async def _housekeeping_loop(self) -> None:
        retention = self.settings.INBOX_RETENTION_HOURS * 3600
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                counts = await self.inbox.counts()
                self.metrics.inbox_pending.set(counts.get("pending", 0))
                if loop.time() - last_prune > 600:
                    pruned = await self.inbox.prune(retention)
                    jobs = await self.delivery.prune(retention)
                    last_prune = loop.time()
                    if pruned or jobs:
                        log.info("pruned old rows", extra={"inbox": pruned, "delivery_jobs": jobs})
            except Exception as exc:
                log.error("inbox housekeeping failed", extra={"error": repr(exc)})
            await asyncio.sleep(10)

    async def _register_webhook(self) -> None:
        """Point Telegram at `WEBHOOK_URL` (with the secret); retried until it works."""
        assert self.settings.WEBHOOK_URL is not None
        delay = 1.0
        while True:
            try:
                await self.telegram.set_webhook(
                    self.settings.WEBHOOK_URL, secret_token=self.settings.WEBHOOK_SECRET_TOKEN
                )
            except Exception as exc:
                log.warning(
                    "setWebhook failed; retrying", extra={"error": str(exc), "retry_in": delay}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                continue
            log.info("webhook registered with Telegram")
            return

    def install_defaults(self) -> None:
        """Make the original module-level functions use this gateway's objects."""
        from app import background_tasks  # imports this module: import late

        telegram_client.set_default(self.telegram)
        user_client.set_default(self.users)
        agent_client.set_default(self.agent)
        storage_retry.set_default(self.retry_queue)
        background_tasks.set_default(self)

    @staticmethod
    def uninstall_defaults() -> None:
        from app import background_tasks

        telegram_client.set_default(None)
        user_client.set_default(None)
        agent_client.set_default(None)
        storage_retry.set_default(None)
        background_tasks.set_default(None)
