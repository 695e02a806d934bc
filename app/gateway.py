"""`Gateway`: the composition root, everything one running gateway process holds.

Built from a `Settings` object and nothing else: the app factory creates one per app and starts
and stops it with the lifespan; tests build as many as they like. Each part gets the clients
and stores it needs handed to it here. The original module-level functions (`send_message`,
`log_interaction`, `flush_retries`, ...) reach a started gateway through `app.current`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
from sqlalchemy import text

from app import current
from app.agent_client import AgentClient
from app.config import Settings
from app.delivery import Delivery, DeliveryConfig
from app.inbound.ingest import IngestBatcher
from app.inbound.poller import Poller
from app.logger import get_logger
from app.metrics import Metrics
from app.processing.addressing import BotIdentity, GroupAddressing
from app.processing.callback_acker import CallbackAcker
from app.processing.cancel import Cancellations
from app.processing.commands import publish_commands
from app.processing.dispatcher import Dispatcher
from app.processing.feedback import ButtonFeedback
from app.processing.files import FileLinks
from app.processing.history import History
from app.processing.pipeline import Pipeline
from app.processing.streaming import StreamConfig, Streamer, stop_requested
from app.processing.turns import TurnConfig, Turns
from app.storage.callbacks import SqlCallbackStore
from app.storage.engine import make_engine
from app.storage.inbox import Inbox, NewUpdate
from app.storage.migrate import upgrade_to_head
from app.storage.retry_queue import RetryQueue
from app.telegram_client import TelegramClient
from app.user_client import UserServiceClient
from app.utils import HANDLED_KINDS

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
            settings.DATABASE_URL,
            sqlite_synchronous=settings.SQLITE_SYNCHRONOUS,
            pool_size=settings.db_pool_size,
            max_overflow=settings.DB_MAX_OVERFLOW,
        )
        self.inbox = Inbox(self.engine, owner=self.owner, lease_seconds=settings.LEASE_SECONDS)
        # Idle connections are dropped before a peer's keep-alive (uvicorn: 5 s) would drop them
        # under a request: that race turns into a failed call (the agent's into "busy").
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=4)
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
            self.engine,
            self.users,
            self.metrics,
            base_delay=settings.RETRY_BASE_DELAY,
            max_attempts=settings.MAX_ATTEMPTS,
        )
        self.history = History(
            self.users, self.retry_queue, context_size=settings.HISTORY_CONTEXT_SIZE
        )
        self.acker = CallbackAcker(self.telegram, self.inbox)
        self.delivery = Delivery(
            self.engine,
            self.telegram,
            DeliveryConfig.from_settings(settings),
            registry=self.metrics.registry,
            owner=self.owner,
            on_delivered=self.history.on_delivered,
            lane_telegram=self._lane_telegram,
        )
        # Conversation turns, groups, files, button feedback (docs/turns.md).
        self.identity = BotIdentity(self.telegram)
        self.cancellations = Cancellations()  # /stop and interrupting turns end an agent call
        self.files = FileLinks(
            bot_token=settings.BOT_TOKEN,
            signing_key=settings.FILES_SIGNING_KEY,
            base_url=settings.files_base_url,
            ttl=settings.FILES_URL_TTL,
            max_bytes=settings.FILES_MAX_BYTES,
        )
        self.turns = Turns(
            self.inbox,
            self.history,
            files=self.files,
            cancellations=self.cancellations,
            config=TurnConfig.from_settings(settings),
        )
        # Streamed replies and /stop (docs/streaming.md); shares the cancellations above.
        self.streamer = Streamer(
            self.agent,
            self.delivery.previews,
            self.delivery.typing,
            self.cancellations,
            StreamConfig(
                mode=settings.STREAM_MODE,
                interval=settings.STREAM_EDIT_INTERVAL,
                group_interval=settings.STREAM_GROUP_EDIT_INTERVAL,
            ),
            # SQLite runs one process, which hears every stop itself (`_after_commit`).
            pending_stop=None if self.engine.dialect.name == "sqlite" else self.inbox.pending_stop,
        )
        self.pipeline = Pipeline(
            inbox=self.inbox,
            users=self.users,
            agent=self.agent,
            history=self.history,
            delivery=self.delivery,
            callbacks=self.callbacks,
            metrics=self.metrics,
            answer_callback=self.acker.answer_once,
            streamer=self.streamer,
            turns=self.turns,
            groups=GroupAddressing(
                self.identity, mode=settings.GROUP_REPLY, trigger_words=settings.trigger_words
            ),
            feedback=ButtonFeedback(self.telegram, settings.BUTTON_FEEDBACK),
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

    def _lane_telegram(self) -> tuple[TelegramClient, Callable[[], Awaitable[None]]]:
        """The delivery send lane's own client (built on the lane's thread and loop)."""
        s = self.settings
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, keepalive_expiry=4))
        client = TelegramClient(
            http, s.BOT_TOKEN, base=s.TELEGRAM_API_BASE, timeout=s.REQUEST_TIMEOUT
        )
        return client, http.aclose

    def _after_commit(self, rows: list[NewUpdate]) -> None:
        self.dispatcher.wake()
        self.acker.on_commit(rows)
        for row in rows:  # a stop must not wait behind the answer it stops
            if stop_requested(row):
                self.cancellations.cancel(row.chat_key, f"stop:{row.update_id}")
        self.turns.on_commit(rows)

    async def start(self) -> None:
        s = self.settings
        await upgrade_to_head(self.engine)
        if s.ingests:
            # A worker-only process has no batcher: its webhook answers 503 (Telegram, or the
            # load balancer, takes the update to an ingesting process instead).
            self.batcher = IngestBatcher(
                self.inbox,
                on_commit=self._after_commit,
                on_batch=self.metrics.ingest_batch_size.observe,
            )
            self.batcher.start()
        self.acker.start()
        if s.processes:
            await self.delivery.start()
            self.dispatcher.start()
            self._loop(self._flush_loop, "retry-flusher")
            self._loop(self._introduce_bot, "bot-profile")
        self._loop(self._housekeeping_loop, "housekeeping")
        if s.ingests and s.UPDATE_MODE == "polling":
            poller = Poller(self.telegram, self.inbox, on_commit=self._after_commit)
            self._loop(poller.run, "poller")
        elif s.ingests and s.WEBHOOK_URL:
            self._loop(self._register_webhook, "set-webhook")
        self.started = True
        log.info(
            "gateway started",
            extra={
                "owner": self.owner,
                "database": self.engine.dialect.name,
                "role": s.GATEWAY_ROLE,
                "ingest": s.ingests,
                "processing": s.processes,
                "updates": s.UPDATE_MODE,
                # configured / derived / disabled: how the webhook authenticates (not the value)
                "webhook_secret": s.webhook_secret_source,
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
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                counts = await self.inbox.counts()
                self.metrics.inbox_pending.set(counts.get("pending", 0))
                if loop.time() - last_prune > 600:
                    await self.prune()
                    last_prune = loop.time()
            except Exception as exc:
                log.error("inbox housekeeping failed", extra={"error": repr(exc)})
            await asyncio.sleep(10)

    async def prune(self) -> dict[str, int]:
        """Forget what is past its retention: processed inbox rows and delivered jobs after
        `INBOX_RETENTION_HOURS`, long button data after `CALLBACK_DATA_RETENTION_DAYS` (every
        reply with a long button adds a row; without this the table only grows). Run by the
        housekeeping loop every ten minutes; returns the rows deleted per table."""
        retention = self.settings.INBOX_RETENTION_HOURS * 3600
        pruned = {
            "inbox": await self.inbox.prune(retention),
            "delivery_jobs": await self.delivery.prune(retention),
            "callback_data": await self.callbacks.prune(
                self.settings.CALLBACK_DATA_RETENTION_DAYS * 86400
            ),
        }
        if any(pruned.values()):
            log.info("pruned old rows", extra=pruned)
        return pruned

    async def _introduce_bot(self) -> None:
        """Learn who the bot is (`getMe`: its username, for group mentions) and publish its
        commands (`setMyCommands`); retried until Telegram answers both."""
        delay = 1.0
        done: set[str] = set()
        while len(done) < 2:
            try:
                if "me" not in done:
                    await self.identity.get()
                    done.add("me")
                if "commands" not in done:
                    await publish_commands(self.telegram)
                    done.add("commands")
                    log.info("bot commands published")
            except Exception as exc:
                log.warning(
                    "getMe / setMyCommands failed; retrying",
                    extra={"error": str(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)

    async def _register_webhook(self) -> None:
        """Point Telegram at `WEBHOOK_URL` (with the secret); retried until it works."""
        assert self.settings.WEBHOOK_URL is not None
        delay = 1.0
        while True:
            try:
                await self.telegram.set_webhook(
                    self.settings.WEBHOOK_URL,
                    secret_token=self.settings.webhook_secret,
                    allowed_updates=list(HANDLED_KINDS),
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

    def install(self) -> None:
        """Route the original module-level functions to this gateway (`app.current`)."""
        current.install(self)

    def uninstall(self) -> None:
        current.uninstall(self)
