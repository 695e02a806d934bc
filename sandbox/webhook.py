"""Webhook delivery, one update in flight at a time, like Telegram does per bot.

The head of the queue is POSTed until the receiver answers 2xx; later updates wait behind it
(so order is kept). Failures (non-2xx, connection errors, timeouts) are retried after the
configured back-off delays and noted in ``getWebhookInfo.last_error_*``.

The worker is the only path from the queue to the bot, so it must not die quietly: anything
unexpected in an attempt is recorded as that attempt's error, and the loop itself is restarted
after a surprise (counted in ``Sandbox.webhook_worker_restarts``, shown by ``/sandbox/info``);
only the app's shutdown stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
import orjson

from sandbox.state import Sandbox

logger = logging.getLogger("sandbox.webhook")

#: An idle worker looks at the queue this often even without a wake-up: a lost wake-up costs
#: a second, not the rest of the run.
IDLE_RECHECK = 1.0


async def _wait_change(sandbox: Sandbox, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sandbox.updates_changed.wait(), seconds)


async def run_webhook_worker(sandbox: Sandbox) -> None:
    """Runs for the life of the app; cancelled at shutdown, restarted after anything else."""
    while True:
        try:
            await _deliver_forever(sandbox)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the app is shutting down
            logger.error("webhook worker: a stray cancellation; restarting")  # e.g. a library's
        except Exception:
            logger.exception("webhook worker failed; restarting")
        sandbox.webhook_worker_restarts += 1
        await asyncio.sleep(0.1)


async def _deliver_forever(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(timeout=sandbox.config.webhook_timeout) as client:
        attempt = 0
        last_head: Any = None
        while True:
            url = sandbox.webhook.url
            if not url or not sandbox.pending:
                attempt = 0
                await _wait_change(sandbox, IDLE_RECHECK)
                continue
            update = sandbox.pending[0]
            if update is not last_head:
                attempt, last_head = 0, update
            attempt += 1
            error = await _post(client, sandbox, url, update, attempt)
            if error is None:
                if sandbox.pending and sandbox.pending[0] is update:
                    sandbox.pending.popleft()
                attempt = 0
                continue
            sandbox.webhook.last_error_date = int(time.time())
            sandbox.webhook.last_error_message = error
            max_attempts = sandbox.config.webhook_max_attempts
            if max_attempts and attempt >= max_attempts:
                if sandbox.pending and sandbox.pending[0] is update:
                    sandbox.pending.popleft()  # Telegram gives up eventually, too
                attempt = 0
                continue
            delays = sandbox.config.webhook_retry_delays or [1.0]
            delay = delays[min(attempt - 1, len(delays) - 1)]
            await _wait_change(sandbox, delay)  # a new setWebhook retries at once


async def _post(
    client: httpx.AsyncClient, sandbox: Sandbox, url: str, update: dict[str, Any], attempt: int
) -> str | None:
    """One delivery attempt; returns None on success or Telegram-style error text."""
    headers = {"Content-Type": "application/json"}
    if sandbox.webhook.secret_token:
        headers["X-Telegram-Bot-Api-Secret-Token"] = sandbox.webhook.secret_token
    entry: dict[str, Any] = {
        "time": time.time(),
        "update_id": update.get("update_id"),
        "url": url,
        "attempt": attempt,
    }
    try:
        response = await client.post(url, content=orjson.dumps(update), headers=headers)
    except Exception as exc:  # the network, or an invalid URL, a library's surprise
        network = isinstance(exc, httpx.HTTPError)
        if not network:
            logger.exception("webhook delivery to %s failed unexpectedly", url)
        kind = "Connection error" if network else "Delivery error"
        entry.update(status=None, error=f"{kind}: {type(exc).__name__}")
        sandbox.deliveries.append(entry)
        return str(entry["error"])
    entry["status"] = response.status_code
    sandbox.deliveries.append(entry)
    if 200 <= response.status_code < 300:
        return None
    entry["error"] = (
        f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
    )
    return str(entry["error"])
