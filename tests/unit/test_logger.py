"""JSON log lines: the fields, correlation ids across tasks, and redaction of secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from app.logger import Redactor, bind_correlation, build_formatter, get_logger, redactor


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(build_formatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    yield buf
    root.removeHandler(handler)
    root.setLevel(old)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_one_json_object_per_line_with_the_fields(stream: io.StringIO) -> None:
    get_logger("t.fields").info("hello %s", "world", extra={"chat_id": 5})
    [line] = [x for x in lines(stream) if x["logger"] == "t.fields"]
    assert line["message"] == "hello world"
    assert line["level"] == "info" and line["chat_id"] == 5
    assert isinstance(line["time"], str) and str(line["time"]).endswith("Z")
    assert "correlation_id" not in line


async def test_correlation_id_reaches_tasks(stream: io.StringIO) -> None:
    log = get_logger("t.corr")

    async def child() -> None:
        log.info("in a task")

    with bind_correlation(4242):
        log.info("outer")
        await asyncio.create_task(child())
    log.info("after")
    got = {x["message"]: x.get("correlation_id") for x in lines(stream) if x["logger"] == "t.corr"}
    assert got == {"outer": "4242", "in a task": "4242", "after": None}


def test_redactor_removes_known_secrets_and_token_urls() -> None:
    r = Redactor(["api-key-123456", None, "ab"])
    text = r("key=api-key-123456 url=https://api.telegram.org/bot123456:AAE-x_y/sendMessage ab")
    assert "api-key-123456" not in text and "AAE-x_y" not in text
    assert "bot***" in text and text.endswith(" ab")  # too-short values are not treated as secrets


async def test_httpx_request_urls_are_redacted(stream: io.StringIO) -> None:
    token = "987654:SECRETtokenVALUEthatMustNotLeak_123"
    redactor.update([token])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True, "result": True})

    logging.getLogger("httpx").setLevel(logging.DEBUG)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        await http.post(f"https://api.telegram.org/bot{token}/getMe")
    output = stream.getvalue()
    assert "api.telegram.org/bot***/getMe" in output
    assert token not in output and "SECRETtoken" not in output


def test_exceptions_are_rendered_and_redacted(stream: io.StringIO) -> None:
    redactor.update(["exception-secret-xyz"])
    try:
        raise RuntimeError("failed with exception-secret-xyz inside")
    except RuntimeError:
        get_logger("t.exc").exception("boom")
    [line] = [x for x in lines(stream) if x["logger"] == "t.exc"]
    assert "RuntimeError" in str(line["exception"])
    assert "exception-secret-xyz" not in str(line["exception"])


def test_every_line_has_a_stable_event(stream: io.StringIO) -> None:
    log = get_logger("t.event")
    log.info("telegram call failed for %s after %d tries", "x", 3)
    log.info("telegram call failed for %s after %d tries", "y", 4)
    log.info("update processed", extra={"event": "update_processed", "outcome": "done"})
    got = [x for x in lines(stream) if x["logger"] == "t.event"]
    assert [x["event"] for x in got] == [
        "telegram_call_failed_for_after_tries",
        "telegram_call_failed_for_after_tries",
        "update_processed",
    ]
    assert got[0]["message"] == "telegram call failed for x after 3 tries"
    assert got[2]["message"] == "update processed" and got[2]["outcome"] == "done"
    assert list(got[2])[:5] == ["time", "level", "logger", "event", "message"]


def test_uvicorn_color_message_is_dropped(stream: io.StringIO) -> None:
    # What uvicorn's loggers send (a logger of our own: other tests reconfigure uvicorn's).
    logging.getLogger("t.uvicorn").info(
        "Started server process [%d]", 42, extra={"color_message": "\x1b[32mStarted\x1b[0m"}
    )
    [line] = [x for x in lines(stream) if x["logger"] == "t.uvicorn"]
    assert line["message"] == "Started server process [42]"
    assert "color_message" not in line and "\x1b" not in json.dumps(line)
    assert line["event"] == "started_server_process"


def test_a_cached_traceback_is_rendered(stream: io.StringIO) -> None:
    record = logging.LogRecord("t.cached", logging.ERROR, __file__, 1, "failed", None, None)
    record.exc_text = "Traceback (most recent call last):\n  ...\nValueError: already redacted"
    logging.getLogger("t.cached").handle(record)
    [line] = [x for x in lines(stream) if x["logger"] == "t.cached"]
    assert "already redacted" in str(line["exception"])


def test_passwords_in_urls_never_reach_a_line(stream: io.StringIO) -> None:
    from app.config import Settings

    settings = Settings(
        _env_file=None,
        BOT_TOKEN="123:abc",
        USER_SERVICE_BASE="http://gateway:Us3rPassw0rd@users.test",
        AGENT_SERVICE_BASE="http://bot:Ag3ntPassw0rd@agent.test",
        DATABASE_URL="postgresql://app:Db%40Passw0rd@db.test/gw",
    )
    redactor.update(settings.secret_values())
    log = get_logger("t.urls")
    log.info("calling %s", settings.USER_SERVICE_BASE + "/api/users")
    log.info("agent at %s", settings.AGENT_SERVICE_BASE)
    log.info("connecting with password Db@Passw0rd decoded")
    log.info("some other url https://someone:Oth3rSecret@x.test/y")
    text = stream.getvalue()
    for secret in ("Us3rPassw0rd", "Ag3ntPassw0rd", "Db@Passw0rd", "Db%40Passw0rd", "Oth3rSecret"):
        assert secret not in text
    assert "http://gateway:***@users.test/api/users" in text
    shown = repr(settings)
    assert "Us3rPassw0rd" not in shown and "Ag3ntPassw0rd" not in shown
    assert "Db%40Passw0rd" not in shown and "http://gateway:***@users.test" in shown


async def test_debug_http_lines_of_the_clients_never_show_url_passwords(
    stream: io.StringIO,
) -> None:
    """USER_SERVICE_BASE / AGENT_SERVICE_BASE with `user:password@` (one with an unencoded `@`
    in the password): httpx and httpcore at DEBUG, answered and refused calls (issue 14)."""
    from app.agent_client import AgentClient
    from app.config import Settings
    from app.user_client import UserServiceClient, UserServiceError

    users_pw, agent_pw = "Us3r-DebugPw", "Ag3nt-Debug@Pw"
    settings = Settings(
        _env_file=None,
        BOT_TOKEN="123:abc",
        USER_SERVICE_BASE=f"http://gw:{users_pw}@users.test",
        AGENT_SERVICE_BASE=f"http://gw:{agent_pw}@agent.test",
    )
    redactor.update(settings.secret_values())
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "agent.test":
            return httpx.Response(200, json={"reply": "hi"})
        return httpx.Response(200, json={"id": "u1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        users = UserServiceClient(http, settings.USER_SERVICE_BASE)
        assert await users.get_user_by_telegram(7) == {"id": "u1"}
        agent = AgentClient(http, settings.AGENT_SERVICE_BASE, timeout=5)
        assert (await agent.respond({"id": "u1"}, "hello")).text == "hi"
    async with httpx.AsyncClient() as http:  # nothing listens on port 9: refused
        refused = UserServiceClient(http, f"http://gw:{users_pw}@127.0.0.1:9", timeout=2)
        with pytest.raises(UserServiceError) as info:
            await refused.get_user_by_telegram(7)
        get_logger("t.debug").warning("lookup failed: %s", info.value)
        agent = AgentClient(http, f"http://gw:{agent_pw}@127.0.0.1:9", timeout=2)
        await agent.respond({"id": "u1"}, "hello")  # busy, logged with the reason
    output = stream.getvalue()
    assert "HTTP Request: GET http://gw:***@users.test/" in output  # the lines are there...
    for secret in (users_pw, agent_pw, "Debug@Pw", "Debug%40Pw", "Ag3nt-Debug"):
        assert secret not in output, secret  # ...without the passwords
