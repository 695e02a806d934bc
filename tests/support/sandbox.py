"""Start the Telegram sandbox as a real process for any test suite."""

from __future__ import annotations

from sandbox.config import DEFAULT_TOKEN
from tests.support.servers import ServerProcess

SANDBOX_TOKEN = DEFAULT_TOKEN


def sandbox_process(**env: object) -> ServerProcess:
    """A (not yet started) sandbox; keyword arguments become ``SANDBOX_<NAME>`` variables,
    e.g. ``sandbox_process(webhook_retry_delays="0.05,0.1", limits__per_chat_rate=5)``."""
    variables = {f"SANDBOX_{key.upper()}": str(value) for key, value in env.items()}
    return ServerProcess("sandbox.main:app", variables, name="sandbox")
