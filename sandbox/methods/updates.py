"""Getting updates: the webhook setting and long polling, with ``allowed_updates`` applied."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from typing import Any

from sandbox import errors
from sandbox.botapi import BotApi, handler
from sandbox.errors import ApiError, bad_request

SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def _subscribe(api: BotApi, params: dict[str, Any]) -> None:
    """``allowed_updates`` given: from now on only those kinds are created ([] = default)."""
    if "allowed_updates" in params:
        kinds = [str(k) for k in params["allowed_updates"]]
        api.sandbox.allowed_updates = kinds or None


@handler("setWebhook")
async def set_webhook(api: BotApi, params: dict[str, Any]) -> Any:
    url = params["url"].strip()
    secret = params.get("secret_token")
    if secret is not None and not SECRET_RE.match(secret):
        raise bad_request("secret token contains unallowed characters")
    if url and not re.match(r"^https?://[^\s/]+", url):
        raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
    if params.get("drop_pending_updates"):
        api.sandbox.pending.clear()
    hook = api.sandbox.webhook
    if not url:
        hook.url, hook.secret_token = "", None
        api.sandbox.wake()
        return True, "Webhook was deleted"
    already = hook.url == url and hook.secret_token == secret
    hook.url, hook.secret_token = url, secret
    hook.max_connections = int(params.get("max_connections") or 40)
    _subscribe(api, params)
    hook.last_error_date = hook.last_error_message = None
    api.sandbox.wake()
    return True, "Webhook is already set" if already else "Webhook was set"


@handler("deleteWebhook")
async def delete_webhook(api: BotApi, params: dict[str, Any]) -> Any:
    if params.get("drop_pending_updates"):
        api.sandbox.pending.clear()
    hook = api.sandbox.webhook
    was_set = bool(hook.url)
    hook.url, hook.secret_token = "", None
    api.sandbox.wake()
    return True, "Webhook was deleted" if was_set else "Webhook is already deleted"


@handler("getWebhookInfo")
async def get_webhook_info(api: BotApi, params: dict[str, Any]) -> Any:
    hook = api.sandbox.webhook
    info: dict[str, Any] = {
        "url": hook.url,
        "has_custom_certificate": False,
        "pending_update_count": len(api.sandbox.pending),
    }
    if hook.url:
        info["max_connections"] = hook.max_connections
        info["ip_address"] = "127.0.0.1"
    if api.sandbox.allowed_updates is not None:
        info["allowed_updates"] = list(api.sandbox.allowed_updates)
    if hook.last_error_date is not None:
        info["last_error_date"] = hook.last_error_date
        info["last_error_message"] = hook.last_error_message
    return info


def _confirm(api: BotApi, offset: int | None) -> None:
    pending = api.sandbox.pending
    if not offset:
        return
    if offset > 0:
        while pending and _uid(pending[0]) < offset:
            pending.popleft()
    else:
        while len(pending) > -offset:
            pending.popleft()


@handler("getUpdates")
async def get_updates(api: BotApi, params: dict[str, Any]) -> Any:
    sandbox = api.sandbox
    if sandbox.webhook.url:
        raise errors.WEBHOOK_CONFLICT
    _subscribe(api, params)
    _confirm(api, params.get("offset"))
    limit = min(max(int(params.get("limit") or 100), 1), 100)
    timeout = min(max(float(params.get("timeout") or 0), 0.0), sandbox.config.max_long_poll)
    api.poll_generation += 1
    generation = api.poll_generation
    sandbox.wake()  # an older long poll still waiting gets terminated, as on Telegram
    deadline = time.monotonic() + timeout
    while not sandbox.pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        changed = sandbox.updates_changed
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            break
        if api.poll_generation != generation:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        if sandbox.webhook.url:
            raise errors.WEBHOOK_CONFLICT
    return [copy.deepcopy(u) for u in list(sandbox.pending)[:limit]]


def _uid(update: dict[str, Any]) -> int:
    uid = update.get("update_id")
    return uid if isinstance(uid, int) else 0
