"""Issue 14, the dev sandbox: a web page must not be able to drive it (Origin/Host checks on
HTTP and the WebSocket), the webhook secret never shows, files are 0600."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import httpx
import pytest
import websockets

from sandbox.client import SandboxControl
from sandbox.files import FileStore
from sandbox.security import OriginGuard
from tests.sandbox.conftest import Bot
from tests.support.servers import ServerProcess

EVIL = "https://evil.example"


def _scope(path: str = "/sandbox/reset", **headers: str) -> dict[str, object]:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "path": path, "headers": raw}


def test_guard_rules() -> None:
    guard = OriginGuard(app=None)  # type: ignore[arg-type]
    ok = "127.0.0.1:8081"
    assert guard.refusal(_scope(host=ok)) is None  # httpx, curl, the gateway: no Origin
    assert guard.refusal(_scope(host=ok, origin="http://127.0.0.1:8081")) is None  # the page
    assert guard.refusal(_scope(host=ok, origin="http://localhost:3000")) is None  # loopback
    assert guard.refusal(_scope(host="[::1]:8081", origin="http://[::1]:8081")) is None
    assert guard.refusal(_scope(host=ok, origin=EVIL)) == "Origin not allowed"
    assert guard.refusal(_scope(host=ok, origin="null")) == "Origin not allowed"
    assert guard.refusal(_scope(host="evil.example:8081")) == "Host not allowed"  # rebinding
    # an <img src=/bot.../sendMessage?...> from another site sends no Origin, but this:
    cross = {"host": ok, "sec_fetch_site": "cross-site"}
    assert guard.refusal(_scope("/bot1:x/sendMessage", **cross)) == "cross-site request"
    assert guard.refusal(_scope("/", **cross)) is None  # a link to the chat page still works
    assert guard.refusal(_scope("/static/app.js", **cross)) is None
    extra = OriginGuard(None, allowed_hosts=["sandbox"], allowed_origins=[EVIL])  # type: ignore[arg-type]
    assert extra.refusal(_scope(host="sandbox:8081", origin=EVIL)) is None


def test_other_origins_cannot_drive_or_wipe_it(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    base = control.base_url
    refused = [
        httpx.post(f"{base}/sandbox/reset", headers={"Origin": EVIL}),
        httpx.post(f"{base}/sandbox/users/{uid}/messages", json={"text": "x"},
                   headers={"Origin": EVIL}),
        httpx.put(f"{base}/sandbox/limits", json={}, headers={"Origin": "null"}),
        httpx.post(bot.base + "/sendMessage", data={"chat_id": uid, "text": "x"},
                   headers={"Origin": EVIL}),
        httpx.get(bot.base + f"/sendMessage?chat_id={uid}&text=x",
                  headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}),
        httpx.post(f"{base}/sandbox/reset", headers={"Host": "rebound.example:80"}),
    ]  # fmt: skip
    assert [r.status_code for r in refused] == [403] * 6
    assert refused[0].json() == {"detail": "Forbidden: Origin not allowed"}
    assert refused[3].json()["error_code"] == 403 and refused[3].json()["ok"] is False
    assert control.users() and control.messages(uid) == []  # nothing happened
    # the same calls from the page itself (same origin) or a loopback tool work
    same = httpx.post(f"{base}/sandbox/users/{uid}/messages", json={"text": "hi"},
                      headers={"Origin": base})  # fmt: skip
    assert same.status_code == 200
    assert httpx.post(
        f"{base}/sandbox/reset", headers={"Origin": "http://localhost:5173"}
    ).is_success


def test_websocket_refuses_other_origins(sandbox_server: ServerProcess) -> None:
    url = sandbox_server.url.replace("http://", "ws://") + "/sandbox/events"

    async def run() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, origin=EVIL):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(url, origin=sandbox_server.url) as ws:  # type: ignore[arg-type]
            assert '"hello"' in await asyncio.wait_for(ws.recv(), 5)
        async with websockets.connect(url) as ws:  # a non-browser client: no Origin
            assert '"hello"' in await asyncio.wait_for(ws.recv(), 5)

    asyncio.run(run())


def test_calls_and_info_never_show_the_webhook_secret(control: SandboxControl, bot: Bot) -> None:
    secret = "very-secret_token-123"
    bot.ok("setWebhook", url="http://127.0.0.1:9/hook", secret_token=secret)
    bot.ok("getWebhookInfo")
    everything = " ".join(
        httpx.get(control.base_url + path).text
        for path in ("/sandbox/calls", "/sandbox/info", "/sandbox/stats", "/sandbox/deliveries")
    )
    assert secret not in everything
    [call] = control.calls("setWebhook")
    assert call["params"]["secret_token"] == "***"
    assert control.info()["webhook"]["secret_set"] is True


def test_file_store_writes_owner_only_files(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask would give 0644
    try:
        store = FileStore(tmp_path / "state")
        stored = store.add("document", b"private bytes", file_name="notes.txt")
    finally:
        os.umask(old)
    assert stored.disk is not None
    assert stat.S_IMODE(stored.disk.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert b"".join(store.chunks(stored)) == b"private bytes"
    store.close()
    assert not stored.disk.exists()  # reset/close removes content


def test_sandbox_process_files_are_0600(tmp_path: Path) -> None:
    from tests.support.sandbox import sandbox_process

    with sandbox_process(state_dir=tmp_path / "st") as server, SandboxControl(server.url) as ctl:
        uid = ctl.create_user("Ann")["id"]
        ctl.send_file(uid, "document", b"%PDF-1.4 tiny", file_name="a.pdf")
        files = [p for p in (tmp_path / "st").iterdir() if p.is_file()]
        assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
        assert stat.S_IMODE((tmp_path / "st").stat().st_mode) == 0o700
