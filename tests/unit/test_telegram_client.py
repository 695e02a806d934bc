"""TelegramClient over respx: envelopes, the real error bodies, and a token that never leaks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from app import telegram_client
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
    assert err.is_rate_limited == (code == 429)
    assert err.is_transient is False
    assert err.is_permanent == (code != 429)
    assert err.is_parse_error == ("can't parse entities" in body["description"])
    retry_after = body.get("parameters", {}).get("retry_after")
    assert err.retry_after == (float(retry_after) if retry_after is not None else None)


@respx.mock
async def test_specific_errors(client: TelegramClient) -> None:
    def by(text: str) -> dict[str, Any]:
        return next(r for r in ERRORS if text in r["body"]["description"])

    cases = {
        "retry after 2282": lambda e: e.is_rate_limited and e.retry_after == 2282.0,
        "blocked by the user": lambda e: e.is_permanent and e.is_chat_unreachable,
        "chat not found": lambda e: e.is_permanent and e.is_chat_unreachable,
        "Unexpected end of name token": lambda e: e.is_parse_error and e.is_permanent,
        "upgraded to a supergroup": lambda e: e.migrate_to_chat_id == -1001557912345,
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
    assert err.is_permanent and err.is_chat_unreachable and not err.is_transient


@respx.mock
async def test_5xx_is_transient(client: TelegramClient) -> None:
    respx.post(f"{URL}/sendMessage").mock(
        return_value=httpx.Response(502, text="<html>Bad Gateway</html>")
    )
    with pytest.raises(TelegramClientError) as info:
        await client.send_message(1, "x")
    err = info.value
    assert err.status == 502 and err.error_code is None and err.is_transient
    assert not err.is_permanent and not err.is_rate_limited
    assert "not JSON" in err.description

    respx.post(f"{URL}/sendMessage").mock(
        return_value=httpx.Response(
            500, json={"ok": False, "error_code": 500, "description": "Internal Server Error"}
        )
    )
    with pytest.raises(TelegramClientError) as info:
        await client.send_message(1, "x")
    assert info.value.is_transient and info.value.error_code == 500


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
    assert err.status is None and err.is_transient and not err.is_permanent
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


@respx.mock
async def test_module_wrappers_use_the_default(client: TelegramClient) -> None:
    route = respx.post(f"{URL}/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 3}})
    )
    respx.post(f"{URL}/sendChatAction").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": True})
    )
    respx.post(f"{URL}/setWebhook").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": True})
    )
    respx.post(f"{URL}/deleteWebhook").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": True})
    )
    telegram_client.set_default(client)
    try:
        assert (await telegram_client.send_message(5, "hey", "HTML"))["result"]["message_id"] == 3
        assert sent_json(route) == {"chat_id": 5, "text": "hey", "parse_mode": "HTML"}
        assert (await telegram_client.send_typing(5))["result"] is True
        assert (await telegram_client.set_webhook("https://x.test/w", "s"))["ok"]
        assert (await telegram_client.delete_webhook())["ok"]
    finally:
        telegram_client.set_default(None)


async def test_default_built_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import config

    monkeypatch.setattr(
        config,
        "_settings",
        config.Settings(
            BOT_TOKEN=TOKEN, USER_SERVICE_BASE="http://users.test", TELEGRAM_API_BASE=BASE
        ),
    )
    telegram_client.set_default(None)
    try:
        default = telegram_client.get_default()
        assert default is telegram_client.get_default()
        assert default.base == BASE and default.timeout == 10
        await default.http.aclose()
    finally:
        telegram_client.set_default(None)
