"""The original specification's API (DESIGN.md, "Original API"): every name, its signature,
and how the module-level functions reach a client, inside and outside a running app."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx

from app import current

#: module -> {function: (parameter names, defaults by name, is a coroutine function)}
FUNCTIONS: dict[str, dict[str, tuple[list[str], dict[str, Any], bool]]] = {
    "app.logger": {"get_logger": (["name"], {}, False)},
    "app.telegram_client": {
        "send_message": (["chat_id", "text", "parse_mode"], {"parse_mode": None}, True),
        "send_typing": (["chat_id"], {}, True),
        "set_webhook": (["url", "secret_token"], {"secret_token": None}, True),
        "delete_webhook": ([], {}, True),
    },
    "app.user_client": {
        "get_user_by_telegram": (["telegram_id"], {}, True),
        "register_user_from_telegram": (["telegram_id", "chat_obj"], {}, True),
        "log_interaction": (
            ["user_id", "message_text", "direction", "telegram_message_id", "metadata"],
            {"direction": "in", "telegram_message_id": None, "metadata": None},
            True,
        ),
        "get_interactions": (["user_id", "limit"], {}, True),
        "interaction_exists_by_telegram_message_id": (
            ["user_id", "telegram_message_id"],
            {},
            True,
        ),
    },
    "app.agent_client": {
        "ask_agent": (["user", "text"], {}, True),
        "ask_agent_rich": (["user", "text", "extra"], {}, True),
    },
    "app.storage_retry": {
        "enqueue_failed_interaction": (["payload"], {}, False),
        "flush_retries": ([], {}, True),
    },
    "app.utils": {
        "parse_update": (["update_json"], {}, False),
        "build_display_name": (["chat"], {}, False),
        "safe_extract_text": (["message"], {}, False),
    },
    "app.background_tasks": {
        "process_message_flow": (
            ["user", "chat_id", "message_text", "message_id", "raw"],
            {},
            True,
        ),
    },
}


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, fns in FUNCTIONS.items() for n in fns])
def test_function_signature(module: str, name: str) -> None:
    fn = getattr(importlib.import_module(module), name)
    params, defaults, is_async = FUNCTIONS[module][name]
    sig = inspect.signature(fn)
    assert list(sig.parameters) == params
    for param, default in defaults.items():
        assert sig.parameters[param].default == default
    assert inspect.iscoroutinefunction(fn) is is_async


def test_exceptions_and_settings() -> None:
    from app import config, telegram_client, user_client

    err = telegram_client.TelegramClientError(
        "sendMessage", status=429, error_code=429, description="slow down", retry_after=3
    )
    assert (err.status, err.error_code, err.description, err.retry_after) == (
        429,
        429,
        "slow down",
        3,
    )
    assert issubclass(user_client.UserServiceError, Exception)
    fields = config.Settings.model_fields
    for name in ("BOT_TOKEN", "WEBHOOK_SECRET_TOKEN", "USER_SERVICE_BASE", "AGENT_SERVICE_BASE"):
        assert name in fields
    assert fields["REQUEST_TIMEOUT"].default == 10
    assert fields["LOG_LEVEL"].default == "INFO"
    assert fields["BOT_TOKEN"].is_required() and fields["USER_SERVICE_BASE"].is_required()


def test_parse_update_keys() -> None:
    from app.utils import parse_update

    parsed = parse_update({"update_id": 1, "message": {"message_id": 2, "text": "/start"}})
    assert isinstance(parsed, dict)
    for key in ("chat_id", "telegram_id", "text", "message_id", "raw", "is_command", "command"):
        assert key in parsed


def test_the_app_and_its_original_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "123:abc")
    monkeypatch.setenv("USER_SERVICE_BASE", "http://users.invalid")
    import app.main as main

    monkeypatch.setattr(main, "_app", None)
    application = main.app
    paths = application.openapi()["paths"]
    assert "get" in paths["/health"] and "post" in paths["/admin/flush-retries"]
    webhook = [r for r in application.routes if getattr(r, "path", None) == "/webhook/telegram"]
    assert webhook and "POST" in getattr(webhook[0], "methods", ())
    monkeypatch.setattr(main, "_app", None)


# --- outside a running app: one client per call, opened and closed -----------------------


class CountingClient(httpx.AsyncClient):
    made: ClassVar[list[httpx.AsyncClient]] = []

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        CountingClient.made.append(self)


@pytest.fixture
def no_running_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from app import config

    monkeypatch.setattr(
        config,
        "_settings",
        config.Settings(
            _env_file=None,
            BOT_TOKEN="123:abc",
            USER_SERVICE_BASE="http://users.test",
            TELEGRAM_API_BASE="http://tg.test",
        ),
    )
    monkeypatch.setattr(httpx, "AsyncClient", CountingClient)
    CountingClient.made = []
    assert current.get() is None
    yield


@respx.mock
async def test_outside_an_app_each_call_opens_and_closes_its_client(no_running_app: None) -> None:
    from app import agent_client, telegram_client, user_client

    respx.post("http://tg.test/bot123:abc/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 9}})
    )
    respx.get("http://users.test/api/users/by-telegram/5").mock(return_value=httpx.Response(404))
    assert (await telegram_client.send_message(5, "hi"))["result"]["message_id"] == 9
    assert await user_client.get_user_by_telegram(5) is None
    assert (await agent_client.ask_agent({"id": "u"}, "hello")).startswith("You said: hello")
    assert len(CountingClient.made) == 3
    assert all(client.is_closed for client in CountingClient.made)


async def test_retry_functions_need_a_running_app(no_running_app: None) -> None:
    from app import storage_retry

    with pytest.raises(RuntimeError, match="running gateway"):
        await storage_retry.flush_retries()
    with pytest.raises(RuntimeError, match="running gateway"):
        storage_retry.enqueue_failed_interaction({"user_id": "u"})


# --- inside a running app: the app's own objects ------------------------------------------


@respx.mock
async def test_inside_a_running_app_the_functions_use_its_objects(tmp_path: Path) -> None:
    """A real `Gateway` (SQLite, peers mocked): the original functions go through it, and
    `process_message_flow` answers a message end to end and returns once it is sent."""
    from app import background_tasks, storage_retry, telegram_client, user_client
    from app.config import Settings
    from app.gateway import Gateway

    sent: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def send(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"ok": True, "result": {"message_id": 100 + len(sent)}})

    def log(request: httpx.Request) -> httpx.Response:
        rows.append(json.loads(request.content))
        return httpx.Response(201, json={"id": len(rows)})

    respx.post("http://tg.test/bot123:abc/sendMessage").mock(side_effect=send)
    respx.post("http://tg.test/bot123:abc/sendChatAction").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": True})
    )
    respx.post("http://users.test/api/interactions").mock(side_effect=log)
    respx.get(url__regex=r"http://users.test/api/interactions/.*").mock(
        return_value=httpx.Response(200, json=[])
    )
    settings = Settings(
        _env_file=None,
        BOT_TOKEN="123:abc",
        USER_SERVICE_BASE="http://users.test",
        TELEGRAM_API_BASE="http://tg.test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'gw.db'}",
        POLL_INTERVAL=0.1,
    )
    gateway = Gateway(settings)
    await gateway.start()
    gateway.install()
    try:
        assert current.get() is gateway
        await telegram_client.send_message(7, "direct")
        assert sent[-1] == {"chat_id": 7, "text": "direct"}
        await user_client.log_interaction("u1", "queued?", "in", 3)
        assert rows[-1]["message_text"] == "queued?"
        storage_retry.enqueue_failed_interaction({"user_id": "u1", "message_text": "later"})
        user = {"id": "u1", "full_name": "Ann"}
        await background_tasks.process_message_flow(user, 7, "hello", 5, {"update_id": 77})
        assert sent[-1]["chat_id"] == 7 and "hello" in sent[-1]["text"]
        assert await storage_retry.flush_retries() >= 0
    finally:
        gateway.uninstall()
        await gateway.stop()
    assert current.get() is None
    # The outbound history row is written once the reply is sent (delivery's hook).
    out = [r for r in rows if r["direction"] == "out"]
    assert len(out) == 1 and out[0]["metadata"]["update_id"] == 77
