"""TelegramClient over respx: envelopes, the real error bodies, and a token that never leaks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from app.errors import Verdict, classify
from app.logger import build_formatter
from app.telegram_client import TelegramClient, TelegramClientError

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
BASE = "https://api.telegram.org"
URL = f"{BASE}/bot{TOKEN}"
DATA = Path(__file__).resolve().parents[1] / "data" / "telegram" / "responses.jsonl"
RESPONSES: list[dict[str, Any]] = [json.loads(line) for line in DATA.read_text().splitlines()]
ERRORS = [r for r in RESPONSES if not r["body"]["ok"]]


@pytest.fixture
async def client() -> AsyncIterator[TelegramClient]:
    async with httpx.AsyncClient() as http:
        yield TelegramClient(http, TOKEN, BASE, timeout=5)


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


@respx.mock
async def test_send_message_returns_envelope(client: TelegramClient) -> None:
    ok = next(r["body"] for r in RESPONSES if r["method"] == "sendMessage" and r["body"]["ok"])
    route = respx.post(f"{URL}/sendMessage").mock(return_value=httpx.Response(200, json=ok))
    result = await client.send_message(42, "hi")
    assert result == ok and result["result"]["message_id"] == 40
    # Optional parameters left as None are omitted, not sent as null.
    assert sent_json(route) == {"chat_id": 42, "text": "hi"}


@respx.mock
async def test_send_message_with_markup_and_extra(client: TelegramClient) -> None:
    route = respx.post(f"{URL}/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 1}})
    )
    markup = {"inline_keyboard": [[{"text": "a", "callback_data": "a"}]]}
    await client.send_message(
        1, "x", parse_mode="HTML", reply_markup=markup, reply_parameters={"message_id": 5}
    )
    assert sent_json(route) == {
        "chat_id": 1,
        "text": "x",
        "parse_mode": "HTML",
        "reply_markup": markup,
        "reply_parameters": {"message_id": 5},
    }


@respx.mock
async def test_other_methods(client: TelegramClient) -> None:
    true = {"ok": True, "result": True}
    routes = {
        name: respx.post(f"{URL}/{name}").mock(return_value=httpx.Response(200, json=true))
        for name in (
            "sendChatAction",
            "answerCallbackQuery",
            "editMessageReplyMarkup",
            "setWebhook",
            "deleteWebhook",
            "getMe",
            "getUpdates",
        )
    }
    await client.send_typing(7)
    assert sent_json(routes["sendChatAction"]) == {"chat_id": 7, "action": "typing"}
    await client.answer_callback_query("q1")
    assert sent_json(routes["answerCallbackQuery"]) == {"callback_query_id": "q1"}
    await client.edit_message_reply_markup(7, 9)
    assert sent_json(routes["editMessageReplyMarkup"]) == {"chat_id": 7, "message_id": 9}
    await client.set_webhook("https://x.test/webhook/telegram", "s3cret", drop_pending_updates=True)
    assert sent_json(routes["setWebhook"]) == {
        "url": "https://x.test/webhook/telegram",
        "secret_token": "s3cret",
        "drop_pending_updates": True,
    }
    await client.delete_webhook()
    assert sent_json(routes["deleteWebhook"]) == {"drop_pending_updates": False}
    await client.get_me()
    await client.get_updates(offset=10, timeout=30, allowed_updates=["message"])
    assert sent_json(routes["getUpdates"]) == {
        "offset": 10,
        "timeout": 30,
        "allowed_updates": ["message"],
    }
    # The HTTP timeout of a long poll covers the poll itself.
    assert routes["getUpdates"].calls.last.request.extensions["timeout"]["read"] == 35


@pytest.mark.parametrize("sample", ERRORS, ids=lambda r: f"{r['http_status']}-{r['method']}")
@respx.mock
async def test_real_error_bodies(client: TelegramClient, sample: dict[str, Any]) -> None:
    body = sample["body"]
    respx.post(f"{URL}/{sample['method']}").mock(
        return_value=httpx.Response(sample["http_status"], json=body)
    )
    with pytest.raises(TelegramClientError) as info:
        await client.call(sample["method"], {"chat_id": 1})
    err = info.value
    assert err.method == sample["method"]
    assert err.status == sample["http_status"]
    assert err.error_code == body["error_code"]
    assert err.description == body["description"]
    assert body["description"] in str(err) and TOKEN not in str(err)
    code = body["error_code"]
    verdict = classify(err)
    assert (verdict is Verdict.RATE_LIMITED) == (code == 429)
    assert (verdict is Verdict.BAD_MARKUP) == ("can't parse entities" in body["description"])
    retry_after = body.get("parameters", {}).get("retry_after")
    assert err.retry_after == (float(retry_after) if retry_after is not None else None)


@respx.mock
async def test_specific_errors(client: TelegramClient) -> None:
    def by(text: str) -> dict[str, Any]:
        return next(r for r in ERRORS if text in r["body"]["description"])

    cases: dict[str, Callable[[TelegramClientError], bool]] = {
        "retry after 2282": lambda e: (
            classify(e) is Verdict.RATE_LIMITED and e.retry_after == 2282.0
        ),
        "blocked by the user": lambda e: classify(e) is Verdict.CHAT_GONE,
        "chat not found": lambda e: classify(e) is Verdict.CHAT_GONE,
        "Unexpected end of name token": lambda e: classify(e) is Verdict.BAD_MARKUP,
        "upgraded to a supergroup": lambda e: (
            e.migrate_to_chat_id == -1001557912345 and classify(e) is Verdict.MIGRATED
        ),
    }
    for text, check in cases.items():
        sample = by(text)
        respx.post(f"{URL}/x").mock(
            return_value=httpx.Response(sample["http_status"], json=sample["body"])
        )
        with pytest.raises(TelegramClientError) as info:
            await client.call("x")
        assert check(info.value), text


def test_user_deactivated_is_permanent() -> None:
    err = TelegramClientError(
        "sendMessage", status=403, error_code=403, description="Forbidden: user is deactivated"
    )
    assert classify(err) is Verdict.CHAT_GONE


@respx.mock
async def test_5xx_is_transient(client: TelegramClient) -> None:
    respx.post(f"{URL}/sendMessage").mock(
        return_value=httpx.Response(502, text="<html>Bad Gateway</html>")
    )
    with pytest.raises(TelegramClientError) as info:
        await client.send_message(1, "x")
    err = info.value
    assert err.status == 502 and err.error_code is None
    assert classify(err) is Verdict.OUTAGE
    assert "not JSON" in err.description

    respx.post(f"{URL}/sendMessage").mock(
        return_value=httpx.Response(
            500, json={"ok": False, "error_code": 500, "description": "Internal Server Error"}
        )
    )
    with pytest.raises(TelegramClientError) as info:
        await client.send_message(1, "x")
    assert classify(info.value) is Verdict.OUTAGE and info.value.error_code == 500


@respx.mock
async def test_ok_false_on_200_and_odd_bodies(client: TelegramClient) -> None:
    respx.post(f"{URL}/a").mock(return_value=httpx.Response(200, json={"ok": False}))
    with pytest.raises(TelegramClientError) as info:
        await client.call("a")
    assert info.value.description == "unexpected response"
    respx.post(f"{URL}/b").mock(return_value=httpx.Response(200, json=[1, 2]))
    with pytest.raises(TelegramClientError):
        await client.call("b")


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connect failed for " + URL),
        httpx.ReadTimeout("timed out for " + URL),
        httpx.RemoteProtocolError("peer closed " + URL),
    ],
)
@respx.mock
async def test_network_errors_never_show_the_token(
    client: TelegramClient, exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    respx.post(f"{URL}/sendMessage").mock(side_effect=exc)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter())
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(TelegramClientError) as info:
            await client.send_message(1, "x")
    finally:
        logging.getLogger().removeHandler(handler)
    err = info.value
    assert err.status is None and classify(err) is Verdict.OUTAGE
    assert type(exc).__name__ in str(err)
    assert TOKEN not in str(err) and TOKEN not in repr(err)
    assert err.__cause__ is None and err.__suppress_context__
    assert TOKEN not in stream.getvalue()
    for record in caplog.records:
        if record.name.startswith("app"):
            assert TOKEN not in record.getMessage()
            assert TOKEN not in json.dumps(record.__dict__, default=str)
    assert "telegram call failed" in stream.getvalue()
    assert TOKEN not in repr(client)
