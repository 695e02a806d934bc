"""Fault injection and the call recording."""

from __future__ import annotations

import time

import httpx
import pytest

from sandbox.client import SandboxControl
from tests.sandbox.conftest import Bot


def test_next_n_calls_fail_then_recover(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    control.inject_fault("sendMessage", count=2)
    first = bot.raw("sendMessage", json={"chat_id": uid, "text": "a"})
    assert first.status_code == 500
    assert first.json() == {"ok": False, "error_code": 500, "description": "Internal Server Error"}
    assert bot.call("sendMessage", chat_id=uid, text="b")["error_code"] == 500
    assert bot.call("getMe")["ok"]  # other methods are unaffected
    assert bot.call("sendMessage", chat_id=uid, text="c")["ok"]
    assert [m["text"] for m in control.bot_messages(uid)] == ["c"]
    calls = control.calls("sendMessage")
    assert [(c["status"], c["fault"]) for c in calls] == [
        (500, "error"),
        (500, "error"),
        (200, None),
    ]
    assert calls[0]["params"] == {"chat_id": uid, "text": "a"}


def test_custom_error_and_flood_faults(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    control.inject_fault("sendmessage", status=502, description="Bad Gateway")
    assert bot.call("sendMessage", chat_id=uid, text="a") == {
        "ok": False,
        "error_code": 502,
        "description": "Bad Gateway",
    }
    control.inject_fault("sendMessage", kind="flood", retry_after=7)
    flood = bot.raw("sendMessage", json={"chat_id": uid, "text": "b"})
    assert flood.status_code == 429 and flood.headers["Retry-After"] == "7"
    assert flood.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    assert control.stats()["flood_429"] == 1


def test_latency_and_clear(control: SandboxControl, bot: Bot) -> None:
    control.inject_fault("getMe", kind="latency", latency=0.5, count=None)
    started = time.monotonic()
    assert bot.call("getMe")["ok"]
    assert time.monotonic() - started >= 0.5
    control.clear_faults()
    started = time.monotonic()
    assert bot.call("getMe")["ok"]
    assert time.monotonic() - started < 0.5


def test_dropped_and_hanging_connections(control: SandboxControl, bot: Bot) -> None:
    control.inject_fault("getMe", kind="drop")
    with pytest.raises(httpx.TransportError):
        bot.raw("getMe")
    control.inject_fault("getMe", kind="hang", hang_seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        bot.http.post(f"{bot.base}/getMe", timeout=0.5)
    assert bot.call("getMe")["ok"]
    statuses = [c["status"] for c in control.calls("getMe")]
    assert statuses[0] == 0 and statuses[-1] == 200


def test_recording_lists_every_call(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    bot.call("getMe")
    bot.call("sendMessage", chat_id=uid, text="x", parse_mode="HTML")
    bot.call("sendMessage", chat_id=uid)
    calls = control.calls()
    assert [c["method"] for c in calls] == ["getMe", "sendMessage", "sendMessage"]
    assert calls[1]["params"] == {"chat_id": uid, "text": "x", "parse_mode": "HTML"}
    assert (
        calls[2]["status"] == 400
        and calls[2]["description"] == "Bad Request: message text is empty"
    )
    assert all(isinstance(c["time"], float) for c in calls)
    control.clear_calls()
    assert control.calls() == []
