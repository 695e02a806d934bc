"""`app.errors.classify`: the one table that says what a failure means.

Checked against every error body in the Telegram response samples, every HTTP status a User
Service can answer, and the gateway's own failure kinds (network, timeouts, its database).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app.errors import (
    AgentServiceError,
    ConfigError,
    GatewayError,
    IngestUnavailable,
    TelegramClientError,
    Unavailable,
    UserServiceError,
    Verdict,
    classify,
    retry_after,
)
from app.telegram_client import _error_from_body

RESPONSES = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "data/telegram/responses.jsonl")
    .read_text()
    .splitlines()
]
ERRORS = [r for r in RESPONSES if not r["body"].get("ok")]


def expected_telegram(status: int, body: dict[str, Any]) -> Verdict:
    """The table in app/errors.py, written out again from the description."""
    code = body.get("error_code", status)
    description = str(body.get("description", "")).lower()
    if code == 429:
        return Verdict.RATE_LIMITED
    if code >= 500 or code == 401:
        return Verdict.OUTAGE
    if code == 409:
        return Verdict.CONFLICT
    if "migrate_to_chat_id" in body.get("parameters", {}):
        return Verdict.MIGRATED
    if "can't parse entities" in description:
        return Verdict.BAD_MARKUP
    if "message is not modified" in description:
        return Verdict.NOT_MODIFIED
    if "message to edit not found" in description or "can't be edited" in description:
        return Verdict.EDIT_GONE
    if code == 403 or "chat not found" in description or "deactivated" in description:
        return Verdict.CHAT_GONE
    return Verdict.PERMANENT


@pytest.mark.parametrize("sample", ERRORS, ids=lambda r: f"{r['http_status']}-{r['method']}")
def test_every_telegram_error_sample(sample: dict[str, Any]) -> None:
    err = _error_from_body(sample["method"], sample["http_status"], sample["body"])
    assert classify(err) is expected_telegram(sample["http_status"], sample["body"])


def test_the_samples_cover_every_telegram_verdict_but_conflict_free_ones() -> None:
    seen = {classify(_error_from_body(s["method"], s["http_status"], s["body"])) for s in ERRORS}
    assert {
        Verdict.RATE_LIMITED,
        Verdict.OUTAGE,
        Verdict.CONFLICT,
        Verdict.MIGRATED,
        Verdict.BAD_MARKUP,
        Verdict.CHAT_GONE,
        Verdict.PERMANENT,
    } <= seen


def test_telegram_without_a_response_is_an_outage() -> None:
    assert classify(TelegramClientError("sendMessage", description="timeout")) is Verdict.OUTAGE
    assert classify(TelegramClientError("x", status=502)) is Verdict.OUTAGE


USER_SERVICE: dict[int | None, Verdict] = {
    None: Verdict.OUTAGE,  # no response: network error or timeout
    408: Verdict.OUTAGE,
    429: Verdict.RATE_LIMITED,
    500: Verdict.FAILURE,  # the 500 question: a bug hit by this request, counted
    401: Verdict.OUTAGE,  # our API key is refused: the service, not the update, is the problem
    403: Verdict.OUTAGE,
    502: Verdict.OUTAGE,
    503: Verdict.OUTAGE,
    504: Verdict.OUTAGE,
}


def test_every_user_service_status() -> None:
    wrong = {}
    for status in [None, *range(300, 600)]:
        err = UserServiceError("x", status=status)
        if status in USER_SERVICE:
            expected = USER_SERVICE[status]
        elif status is not None and 400 <= status < 500:
            expected = Verdict.PERMANENT  # 400, 404, 409, 413, 422, ...: fails again as it is
        else:
            expected = Verdict.FAILURE  # other 5xx, and 3xx where a success was expected
        if classify(err) is not expected or err.retryable is (expected is Verdict.PERMANENT):
            wrong[status] = (classify(err), expected)
    assert wrong == {}


def test_a_malformed_success_is_an_outage() -> None:
    """A 2xx that is not the contract's JSON: a proxy page or a half-deployed service."""
    assert classify(UserServiceError("x", status=200, malformed=True)) is Verdict.OUTAGE


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (Unavailable("down"), Verdict.OUTAGE),
        (IngestUnavailable("db"), Verdict.OUTAGE),
        (TimeoutError(), Verdict.OUTAGE),
        (ConnectionRefusedError(), Verdict.OUTAGE),
        (httpx.ConnectError("no"), Verdict.OUTAGE),
        (OperationalError("select 1", {}, Exception("server closed")), Verdict.OUTAGE),
        (IntegrityError("insert", {}, Exception("duplicate")), Verdict.FAILURE),
        (AgentServiceError("x", status=503), Verdict.OUTAGE),
        (ValueError("a bug"), Verdict.FAILURE),
        (KeyError("a bug"), Verdict.FAILURE),
    ],
)
def test_the_gateways_own_failures(exc: BaseException, verdict: Verdict) -> None:
    assert classify(exc) is verdict


def test_one_tree() -> None:
    for cls in (
        ConfigError,
        TelegramClientError,
        UserServiceError,
        AgentServiceError,
        Unavailable,
        IngestUnavailable,
    ):
        assert issubclass(cls, GatewayError)
    from app import config, telegram_client, user_client

    # The original names keep working from their modules.
    assert telegram_client.TelegramClientError is TelegramClientError
    assert user_client.UserServiceError is UserServiceError
    assert config.ConfigError is ConfigError


def test_retry_after() -> None:
    sample = next(r for r in ERRORS if "retry after 2282" in r["body"]["description"])
    err = _error_from_body(sample["method"], sample["http_status"], sample["body"])
    assert retry_after(err) == 2282.0
    assert retry_after(UserServiceError("x", status=429, retry_after=3)) == 3.0
    assert retry_after(ValueError()) is None


def test_edits() -> None:
    def err(description: str) -> TelegramClientError:
        return TelegramClientError(
            "editMessageText", status=400, error_code=400, description=description
        )

    assert (
        classify(
            err(
                "Bad Request: message is not modified: specified new message content"
                " and reply markup are exactly the same"
            )
        )
        is Verdict.NOT_MODIFIED
    )
    assert classify(err("Bad Request: message to edit not found")) is Verdict.EDIT_GONE
    assert classify(err("Bad Request: message can't be edited")) is Verdict.EDIT_GONE
