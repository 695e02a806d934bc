"""Start the Telegram sandbox as a real process for any test suite."""

from __future__ import annotations

from sandbox.config import DEFAULT_TOKEN
from tests.support.servers import ServerProcess

SANDBOX_TOKEN = DEFAULT_TOKEN

#: Flood limits lifted (sends and edits), for suites that test something else than pacing:
#: ``sandbox_process(**RELAXED_LIMITS)``; a test that wants limits sets them with set_limits.
RELAXED_LIMITS: dict[str, object] = {
    "limits__per_chat_rate": 1000,
    "limits__per_chat_burst": 1000,
    "limits__global_rate": 1000,
    "limits__global_burst": 1000,
    "limits__group_rate_per_minute": 60000,
    "limits__group_burst": 1000,
    "limits__edit_per_chat_rate": 1000,
    "limits__edit_per_chat_burst": 1000,
    "limits__edit_group_rate_per_minute": 60000,
    "limits__edit_group_burst": 1000,
}


def sandbox_process(**env: object) -> ServerProcess:
    """A (not yet started) sandbox; keyword arguments become ``SANDBOX_<NAME>`` variables,
    e.g. ``sandbox_process(webhook_retry_delays="0.05,0.1", limits__per_chat_rate=5)``."""
    variables = {f"SANDBOX_{key.upper()}": str(value) for key, value in env.items()}
    return ServerProcess("sandbox.main:app", variables, name="sandbox")
