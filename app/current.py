"""The running gateway, for the original module-level functions and nothing else.

The original specification has module-level functions (`send_message`, `log_interaction`,
`ask_agent`, `flush_retries`, `process_message_flow`, ...). The gateway itself never calls
them: it builds its objects from a `Settings` and hands them to whoever needs them. The
functions exist for other code and people, and they need *some* client: inside a running app,
the app's own (same connection pool, same retry queue, same delivery engine); outside one
(a script, a REPL), each call opens and closes its own HTTP client, as `httpx.get` does, so
nothing leaks.

This module is that single switch: the app's lifespan calls `install(gateway)` once started and
`uninstall()` when stopping. It holds one reference, typed by a Protocol so that this bottom
layer imports nothing above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from app.agent_client import AgentClient
    from app.config import Settings
    from app.delivery import Delivery
    from app.processing.pipeline import Pipeline
    from app.storage.retry_queue import RetryQueue
    from app.telegram_client import TelegramClient
    from app.user_client import UserServiceClient


class RunningGateway(Protocol):
    """What the original functions use of a running `app.gateway.Gateway`."""

    settings: Settings
    telegram: TelegramClient
    users: UserServiceClient
    agent: AgentClient
    retry_queue: RetryQueue
    pipeline: Pipeline
    delivery: Delivery


_running: RunningGateway | None = None


def install(gateway: RunningGateway) -> None:
    """Route the original functions to this gateway's objects (called once it has started)."""
    global _running
    _running = gateway


def uninstall(gateway: RunningGateway | None = None) -> None:
    """Forget the running gateway (only `gateway`, when given: a second app may have replaced it)."""
    global _running
    if gateway is None or _running is gateway:
        _running = None


def get() -> RunningGateway | None:
    """The running gateway of this process, or None outside a running app."""
    return _running


def require(what: str) -> RunningGateway:
    """The running gateway, or a clear error for functions that only make sense inside one."""
    if _running is None:
        raise RuntimeError(f"{what} needs a running gateway in this process (start the app first)")
    return _running
