"""Forged updates are refused by default (issue 14): the webhook always wants a secret.

Without `WEBHOOK_SECRET_TOKEN` the gateway derives one from the bot token (every replica gets
the same), registers it with `setWebhook` (at start and in `messaging set-webhook`), and refuses
any call without it; only `WEBHOOK_SECRET_TOKEN_REQUIRED=false` accepts unauthenticated calls.
The start-up log says which of the three it is, never the value.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app import cli
from app.config import Settings, derive_webhook_secret
from app.gateway import Gateway
from app.logger import redactor
from app.main import create_app
from jsonlog import build_formatter
from tests.integration.test_webhook import Client, make_settings, message

TOKEN = "123:abc"  # make_settings' bot token
DERIVED = derive_webhook_secret(TOKEN)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield Client(app, http)


def _started_line(caplog: pytest.LogCaptureFixture) -> tuple[logging.LogRecord, str]:
    [record] = [r for r in caplog.records if r.getMessage() == "gateway started"]
    return record, build_formatter(redactor).format(record)


async def test_no_secret_configured_means_a_derived_one_is_required(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(f"sqlite:///{tmp_path / 'gw.db'}", WEBHOOK_SECRET_TOKEN=None)
    async with running(settings) as client:
        for forged in (None, "", "guess", DERIVED[:-1]):
            assert (await client.post(message(1), secret=forged)).status_code == 403
        assert await client.stored() == []
        assert (await client.post(message(2), secret=DERIVED)).status_code == 200
        assert await client.stored() == [2]
    record, line = _started_line(caplog)
    assert getattr(record, "webhook_secret", None) == "derived"
    assert DERIVED not in line and DERIVED not in caplog.text


async def test_a_configured_secret_is_logged_as_configured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(make_settings(f"sqlite:///{tmp_path / 'gw.db'}")) as client:
        # The derived secret is no back door when a secret is configured.
        assert (await client.post(message(3), secret=DERIVED)).status_code == 403
    record, _ = _started_line(caplog)
    assert getattr(record, "webhook_secret", None) == "configured"


async def test_explicit_opt_out_accepts_unauthenticated_updates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(
        f"sqlite:///{tmp_path / 'gw.db'}",
        WEBHOOK_SECRET_TOKEN=None,
        WEBHOOK_SECRET_TOKEN_REQUIRED=False,
    )
    async with running(settings) as client:
        assert (await client.post(message(4), secret=None)).status_code == 200
        assert await client.stored() == [4]
    record, _ = _started_line(caplog)
    assert getattr(record, "webhook_secret", None) == "disabled"


def test_derived_secret_is_stable_telegram_shaped_and_per_bot() -> None:
    assert derive_webhook_secret(TOKEN) == DERIVED  # every replica computes the same
    assert derive_webhook_secret("124:abc") != DERIVED
    assert 1 <= len(DERIVED) <= 256
    assert set(DERIVED) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    settings = make_settings("sqlite:///:memory:", WEBHOOK_SECRET_TOKEN=None)
    assert settings.webhook_secret == DERIVED
    assert DERIVED in settings.secret_values()  # redacted from every log line
    assert DERIVED not in repr(settings)


class RecordingTelegram:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def set_webhook(
        self, url: str, secret_token: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        self.calls.append({"url": url, "secret_token": secret_token, **extra})
        return {"ok": True, "result": True}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WEBHOOK_SECRET_TOKEN": None}, DERIVED),
        ({}, "s3cret-Token_1"),
        ({"WEBHOOK_SECRET_TOKEN": None, "WEBHOOK_SECRET_TOKEN_REQUIRED": False}, None),
    ],
    ids=["derived", "configured", "disabled"],
)
async def test_gateway_registers_the_secret_it_requires(
    tmp_path: Path, extra: dict[str, Any], expected: str | None
) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'gw.db'}",
        WEBHOOK_URL="https://bot.example.com/webhook/telegram",
        **extra,
    )
    gateway = Gateway(settings)
    telegram = RecordingTelegram()
    gateway.telegram = telegram  # type: ignore[assignment]
    try:
        await gateway._register_webhook()
    finally:
        for http in (gateway.telegram_http, gateway.users_http, gateway.agent_http):
            await http.aclose()
        await gateway.engine.dispose()
    [call] = telegram.calls
    assert call["url"] == "https://bot.example.com/webhook/telegram"
    assert call["secret_token"] == expected


@pytest.mark.parametrize(
    ("env", "expected", "source"),
    [
        ({}, DERIVED, "derived"),
        ({"WEBHOOK_SECRET_TOKEN": "cli-Secret_1"}, "cli-Secret_1", "configured"),
        ({"WEBHOOK_SECRET_TOKEN_REQUIRED": "false"}, None, "disabled"),
    ],
    ids=["derived", "configured", "disabled"],
)
def test_cli_set_webhook_registers_the_same_secret(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None, source: str
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no .env file here
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(cli, "_telegram_call", lambda method, **params: calls.append(params))
    full = {"BOT_TOKEN": TOKEN, "USER_SERVICE_BASE": "http://127.0.0.1:9", **env}
    result = CliRunner().invoke(cli.app, ["set-webhook", "https://bot.example.com/hook"], env=full)
    assert result.exit_code == 0, result.output
    assert calls == [{"url": "https://bot.example.com/hook", "secret_token": expected}]
    assert f"webhook secret: {source}" in result.output
    assert DERIVED not in result.output
