"""Every exception of the gateway, and the one place that decides what a failure means.

Four loops meet failures: the dispatcher (an update's step failed), the delivery sender (a
send failed), the retry queue (a history write failed again) and the poller (`getUpdates`
failed). They used to decide "retry or give up" each in its own way, and disagreed. Now each
asks `classify(exc)` for a `Verdict` and maps the verdict to an action; nothing else in the
gateway looks at status codes.

The table (docs/architecture.md, "Failures", has the reasoning):

| failure | verdict |
|---|---|
| no response (network error, timeout), from anyone | OUTAGE |
| User Service 502, 503, 504, 408, 401, 403 (down, overloaded, or refusing *us*) | OUTAGE |
| User Service 429; Telegram 429 | RATE_LIMITED (wait `retry_after`) |
| User Service 500 | FAILURE (counted: a 500 is usually this request hitting a bug) |
| User Service other 4xx (400, 404, 409, 422, ...) | PERMANENT |
| Telegram 5xx; Telegram 401 (token revoked: every call fails, the message is fine) | OUTAGE |
| Telegram 400 "can't parse entities" | BAD_MARKUP (resend as plain text) |
| Telegram 400 with `migrate_to_chat_id` | MIGRATED (resend to the supergroup) |
| Telegram 400 "message is not modified" | NOT_MODIFIED (the edit is already there: done) |
| Telegram 400 "message to edit not found" / "message can't be edited" | EDIT_GONE (send anew) |
| Telegram 403, 400 "chat not found" / "user is deactivated" / "PEER_ID_INVALID" | CHAT_GONE |
| Telegram 409 (webhook vs getUpdates) | CONFLICT |
| Telegram 400 "file is too big"; `FileTooBig` (over the bots' download limit) | TOO_BIG |
| Telegram other 4xx | PERMANENT |
| the gateway's own database unreachable | OUTAGE |
| anything else (a bug) | FAILURE |

The 500 question, decided once: a User Service 500 is a FAILURE, not an OUTAGE. A service that
is down or overloaded says so with 502/503/504 (the reference User Service answers 503 for any
database failure); a 500 is an unexpected error on *this* request, and an update that keeps
hitting one must eventually be set aside (dead, after `MAX_ATTEMPTS`) so its chat moves on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class GatewayError(Exception):
    """Base of every exception the gateway raises on purpose."""


class ConfigError(GatewayError):
    """Configuration is missing or invalid; the message names variables, never their values."""


class ServiceError(GatewayError):
    """An HTTP peer (Telegram, the User Service, the Agent Service) did not do what was asked.

    `status` is the HTTP status, None when no response arrived (timeout, connection error);
    `retry_after` is the peer's own estimate of when to try again, in seconds, when it gave one.
    """

    peer = "service"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TelegramClientError(ServiceError):
    """A Bot API call that did not return ``ok: true``.

    `status` is the HTTP status (None when no response arrived), `error_code` /
    `description` / `retry_after` / `migrate_to_chat_id` come from Telegram's error body.
    """

    peer = "telegram"

    def __init__(
        self,
        method: str,
        *,
        status: int | None = None,
        error_code: int | None = None,
        description: str = "",
        retry_after: float | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        self.method = method
        self.error_code = error_code
        self.description = description
        self.migrate_to_chat_id = migrate_to_chat_id
        where = f"HTTP {status}" if status is not None else "no response"
        code = f" (error_code {error_code})" if error_code is not None else ""
        super().__init__(
            f"Telegram {method} failed: {where}{code}: {description}",
            status=status,
            retry_after=retry_after,
        )

    @property
    def code(self) -> int | None:
        """Telegram's `error_code` when it sent one, else the HTTP status."""
        return self.error_code if self.error_code is not None else self.status


class UserServiceError(ServiceError):
    """A User Service call that failed; `body` is its decoded answer, when there was one."""

    peer = "user_service"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
        malformed: bool = False,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.body = body
        #: A 2xx whose body is not the documented JSON (a proxy page, a half-deployed service).
        self.malformed = malformed

    @property
    def retryable(self) -> bool:
        """Whether trying the same call later can succeed (anything but PERMANENT)."""
        return classify(self) is not Verdict.PERMANENT


class AgentServiceError(ServiceError):
    """The Agent Service failed a call (the client turns this into the busy answer)."""

    peer = "agent"


class Unavailable(GatewayError):
    """A dependency is temporarily unreachable: retry later without counting an attempt."""


class IngestUnavailable(GatewayError):
    """An update could not be stored: the webhook answers 503 so Telegram redelivers."""


class FileTooBig(GatewayError):
    """A file is larger than Telegram lets a bot download (20 MB): asking again cannot help."""

    def __init__(self, size: int | None, limit: int) -> None:
        mb = f"{size / 2**20:.1f} MB" if size is not None else "larger than the limit"
        most = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit / 1024:g} KB"
        super().__init__(f"the file is {mb}; Telegram lets bots download at most {most}")
        self.size = size
        self.limit = limit


class Verdict(StrEnum):
    """What a failure means for whoever hit it (see the module docstring's table)."""

    OUTAGE = "outage"  # a dependency is down or refusing us: wait, never give the work up
    RATE_LIMITED = "rate_limited"  # told to slow down: wait `retry_after`, uncounted
    FAILURE = "failure"  # this piece of work failed: retry with back-off, counted
    PERMANENT = "permanent"  # retrying the same request cannot succeed
    BAD_MARKUP = "bad_markup"  # Telegram could not parse the text's entities
    CHAT_GONE = "chat_gone"  # the bot can no longer write to this chat
    MIGRATED = "migrated"  # the group became a supergroup with another id
    NOT_MODIFIED = "not_modified"  # an edit to the text the message already shows: done
    EDIT_GONE = "edit_gone"  # the message to edit was deleted, or can no longer be edited
    CONFLICT = "conflict"  # getUpdates while a webhook is set (or another poller runs)
    TOO_BIG = "too_big"  # a file over the download limit: refuse it, clearly


#: User Service statuses that mean the service (not this request) is the problem.
_USER_SERVICE_OUTAGE = frozenset({401, 403, 408, 502, 503, 504})
_CHAT_GONE_PHRASES = ("chat not found", "user is deactivated", "peer_id_invalid")
_EDIT_GONE_PHRASES = ("message to edit not found", "message can't be edited")


def _telegram(exc: TelegramClientError) -> Verdict:
    code = exc.code
    if code is None:
        return Verdict.OUTAGE
    if code == 429:
        return Verdict.RATE_LIMITED
    if code >= 500 or code == 401:
        return Verdict.OUTAGE
    if code == 409:
        return Verdict.CONFLICT
    if isinstance(exc.migrate_to_chat_id, int):
        return Verdict.MIGRATED
    description = exc.description.lower()
    if code == 400 and "can't parse entities" in description:
        return Verdict.BAD_MARKUP
    if code == 400 and "message is not modified" in description:
        return Verdict.NOT_MODIFIED
    if code == 400 and any(p in description for p in _EDIT_GONE_PHRASES):
        return Verdict.EDIT_GONE
    if code == 400 and "file is too big" in description:
        return Verdict.TOO_BIG
    if code == 403 or (code == 400 and any(p in description for p in _CHAT_GONE_PHRASES)):
        return Verdict.CHAT_GONE
    return Verdict.PERMANENT


def _http_status(status: int | None, *, malformed: bool = False) -> Verdict:
    if status is None or malformed:
        return Verdict.OUTAGE
    if status == 429:
        return Verdict.RATE_LIMITED
    if status in _USER_SERVICE_OUTAGE:
        return Verdict.OUTAGE
    if status >= 500:
        return Verdict.FAILURE
    if 400 <= status < 500:
        return Verdict.PERMANENT
    return Verdict.FAILURE  # a 1xx/2xx/3xx where a success was expected: unexpected


def _is_database_outage(exc: BaseException) -> bool:
    """The gateway's own database cannot be reached (not: a statement it refused)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def classify(exc: BaseException) -> Verdict:
    """The verdict for a failure; pure (reads the exception, nothing else)."""
    if isinstance(exc, TelegramClientError):
        return _telegram(exc)
    if isinstance(exc, UserServiceError):
        return _http_status(exc.status, malformed=exc.malformed)
    if isinstance(exc, ServiceError):
        return _http_status(exc.status)
    if isinstance(exc, Unavailable | IngestUnavailable):
        return Verdict.OUTAGE
    if isinstance(exc, FileTooBig):
        return Verdict.TOO_BIG
    if isinstance(exc, TimeoutError | ConnectionError):
        return Verdict.OUTAGE
    import httpx

    if isinstance(exc, httpx.TransportError):
        return Verdict.OUTAGE
    if _is_database_outage(exc):
        return Verdict.OUTAGE
    return Verdict.FAILURE


def retry_after(exc: BaseException) -> float | None:
    """The wait a peer asked for (429 `retry_after`, `Retry-After`), when it gave one."""
    value = getattr(exc, "retry_after", None) if isinstance(exc, ServiceError) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else None


__all__ = [
    "AgentServiceError",
    "ConfigError",
    "FileTooBig",
    "GatewayError",
    "IngestUnavailable",
    "ServiceError",
    "TelegramClientError",
    "Unavailable",
    "UserServiceError",
    "Verdict",
    "classify",
    "retry_after",
]
