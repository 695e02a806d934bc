"""What every backend produces, and the failures the HTTP layer turns into status codes.

A backend's `answer(request, stream=...)` is an async iterator of `Delta` (a piece of the
reply, only when streaming) ending with one `Final` (the whole reply and its buttons). The
invariant the SSE layer relies on: `Final.reply` equals the concatenation of the deltas.
`Progress` says "the model is still producing" without text to show (a tool call arriving
in fragments): it keeps a streamed turn's deadline from expiring and is never sent.
Failures are raised as `AgentError` subclasses, each naming the status the caller should see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent_service.schemas import RespondIn


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Final:
    reply: str
    actions: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    pass


Event = Delta | Final | Progress


class AgentError(Exception):
    """A turn that cannot be answered. `reason` is safe to show the caller (no secrets)."""

    status = 502

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def headers(self) -> dict[str, str]:
        return {}


class UpstreamBusy(AgentError):
    """The model is overloaded, rate limited or unreachable: try again later (503)."""

    status = 503
    default_retry_after = 5

    def __init__(self, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamRefused(AgentError):
    """The model's API refused the request (4xx: bad key, unknown model...) (502)."""


class UpstreamFailed(AgentError):
    """The model's API broke: a 5xx, an invalid or cut-off answer (502)."""


class UpstreamTimeout(AgentError):
    """No answer (or no progress, when streaming) within AGENT_UPSTREAM_TIMEOUT (504)."""

    status = 504


class Backend(Protocol):
    name: str

    def answer(self, request: RespondIn, *, stream: bool) -> AsyncIterator[Event]:
        """The turn's events; `stream=False` may yield the `Final` alone."""
        ...

    async def start(self) -> None:
        """Acquire what the backend needs (a client, a child process) before serving."""
        ...

    async def close(self) -> None: ...
