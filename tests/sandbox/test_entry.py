"""`python -m sandbox --port N` starts the app; SANDBOX_* settings reach it."""

from __future__ import annotations

import sys

import httpx
import pytest

from sandbox.config import SandboxConfig
from tests.support.servers import ServerProcess, free_port


def test_settings_parse_env_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_WEBHOOK_RETRY_DELAYS", "0.5, 1,2")
    monkeypatch.setenv("SANDBOX_LIMITS__GROUP_BURST", "7")
    config = SandboxConfig()
    assert config.webhook_retry_delays == [0.5, 1.0, 2.0]
    assert config.limits.group_burst == 7
    monkeypatch.setenv("SANDBOX_WEBHOOK_RETRY_DELAYS", "[1, 3]")
    assert SandboxConfig().webhook_retry_delays == [1.0, 3.0]


def test_module_entry_point_with_token_and_env() -> None:
    port = free_port()
    token = "42:custom-token"
    argv = [sys.executable, "-m", "sandbox", "--port", str(port), "--token", token]
    env = {"SANDBOX_LIMITS__PER_CHAT_BURST": "1", "SANDBOX_BOT_USERNAME": "entry_bot"}
    with ServerProcess("sandbox", env, port=port, argv=argv, name="sandbox-entry") as server:
        me = httpx.get(f"{server.url}/bot{token}/getMe").json()
        assert me["ok"] and me["result"]["id"] == 42
        assert me["result"]["username"] == "entry_bot"
        default = httpx.get(
            f"{server.url}/bot123456789:AAsandbox-token-for-local-development/getMe"
        )
        assert default.status_code == 401
        assert httpx.get(f"{server.url}/sandbox/limits").json()["per_chat_burst"] == 1
        page = httpx.get(server.url + "/")
        assert page.status_code == 200 and 'data-testid="message-input"' in page.text
        assert httpx.get(server.url + "/static/app.js").status_code == 200
