"""Start a real User Service process, for this service's tests and for the gateway's.

The gateway's `user_client` tests use this to talk to the reference implementation over HTTP
instead of a mock, so the two sides of the contract are checked against each other.
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.support.servers import ServerProcess


def users_service_process(
    database_url: str, api_key: str | None = None, env: Mapping[str, str] | None = None
) -> ServerProcess:
    """A not-yet-started `ServerProcess` running `users_service.main:app`.

    `database_url` is any URL the service accepts (`sqlite:///...`, `postgresql://...`); the
    schema is created at start-up. `api_key=None` means no key: `API_KEY` is set to the empty
    string so a key in the surrounding environment cannot leak into the test. `env` adds or
    overrides variables (`MAX_BODY_BYTES`, ...).
    """
    return ServerProcess(
        "users_service.main:app",
        env={
            "DATABASE_URL": database_url,
            "API_KEY": api_key or "",
            "LOG_LEVEL": "INFO",
            **(env or {}),
        },
        name="users_service",
    )
