"""Start a real Agent Service process (`agent_service.main:app`) for any test suite.

Keyword arguments are the service's environment variables, e.g.
``agent_service_process(AGENT_BACKEND="openai", OPENAI_BASE_URL=stub.url + "/v1")``.
Keys and the demo's word delay default to off, so nothing in the surrounding environment (a
developer's `OPENAI_API_KEY`) leaks into a test, and the demo streams without waiting.
"""

from __future__ import annotations

from tests.support.servers import ServerProcess

DEFAULTS = {
    "AGENT_BACKEND": "demo",
    "AGENT_SERVICE_API_KEY": "",
    "OPENAI_API_KEY": "",
    "AGENT_DEMO_DELAY": "0",
    "LOG_LEVEL": "INFO",
}


def agent_service_process(**env: str) -> ServerProcess:
    """A not-yet-started `ServerProcess`; `.url` is what the gateway's AGENT_SERVICE_BASE takes.

    The `local` backend loads its model before it is ready: give it a longer
    `server.ready_timeout` (seconds) before `start()`.
    """
    variables = {**DEFAULTS, **env}
    return ServerProcess(
        "agent_service.main:app",
        variables,
        name=f"agent_service_{variables['AGENT_BACKEND']}",
    )


def agent_service_on(port: int, **env: str) -> ServerProcess:
    """Like `agent_service_process`, on a given port: a test can stop one agent and start
    another (another backend, say) at the same address the gateway was given."""
    variables = {**DEFAULTS, **env}
    return ServerProcess(
        "agent_service.main:app",
        variables,
        port=port,
        name=f"agent_service_{variables['AGENT_BACKEND']}",
    )
