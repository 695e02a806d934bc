"""JSON log lines: the fields, correlation ids across tasks, and redaction of secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
import pytest

from app.logger import Redactor, bind_correlation, build_formatter, get_logger, redactor


@pytest.fixture
def stream() -> io.StringIO:
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
