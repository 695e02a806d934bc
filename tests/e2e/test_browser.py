"""The local stack as a developer runs it: `messaging dev` (sandbox + User Service + gateway)
with the agent stand-in, driven from the sandbox's chat page in Chromium."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_stub import agent_process
from tests.support.browser import ARTIFACTS, chromium_page
from tests.support.servers import ROOT, ServerProcess, free_port, wait_until

MESSAGING = ROOT / ".venv" / "bin" / "messaging"
pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class DevStack:
    """`messaging dev` as a subprocess, its output in a file."""

    def __init__(self, state: Path, agent_url: str) -> None:
        self.ports = {"port": free_port(), "gateway": free_port(), "users": free_port()}
        self.log_path = state / "messaging-dev.out"
        argv = [str(MESSAGING), "dev", "--port", str(self.ports["port"])]
        argv += ["--gateway-port", str(self.ports["gateway"])]
        argv += ["--users-port", str(self.ports["users"]), "--state", str(state / "dev")]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, "AGENT_SERVICE_BASE": agent_url, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.children: list[int] = []

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_url(self, timeout: float = 120) -> str:
        def printed() -> bool:
            assert self.proc.poll() is None, f"messaging dev exited:\n{self.output()}"
            return "Press Ctrl-C to stop." in self.output()

        wait_until(printed, timeout=timeout, interval=0.2, what="messaging dev to print its URL")
        match = re.search(r"Chat with the bot:\s+(\S+)", self.output())
        assert match, self.output()
        self.children = _children(self.proc.pid)
        return match.group(1)

    def kill_all(self) -> None:
        """Last-resort clean-up: only the processes this test started."""
        for pid in [*self.children, self.proc.pid]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def agent() -> Iterator[ServerProcess]:
    with agent_process() as server:
        yield server


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with chromium_page(timeout_ms=20_000) as page:
        yield page


def test_chat_page_through_messaging_dev(
    tmp_path: Path, agent: ServerProcess, browser_page: Any
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    dev = DevStack(tmp_path, agent.url)
    try:
        url = dev.wait_url()
        assert url == f"http://127.0.0.1:{dev.ports['port']}/"
        assert len(dev.children) == 3, dev.children  # sandbox, User Service, gateway

        page.goto(url)
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        page.get_by_test_id("new-user-name").fill("Browser Bảo")
        page.get_by_test_id("create-user").click()
        expect(page.locator("[data-testid=user-item].active")).to_contain_text("Browser Bảo")

        page.get_by_test_id("message-input").fill("show buttons")
        page.get_by_test_id("send-button").click()
        bot_texts = page.locator("[data-testid=message][data-from=bot] .text")
        expect(bot_texts).to_have_text(["Agent: show buttons"])
        buttons = page.get_by_test_id("inline-button")
        expect(buttons).to_have_count(3)
        expect(buttons.nth(0)).to_have_text("Yes")
        expect(buttons.nth(2)).to_contain_text("Docs")
        buttons.nth(0).click()
        expect(bot_texts).to_have_text(["Agent: show buttons", "Agent: answer:yes"])
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e-chat.png"), full_page=True)

        dev.proc.send_signal(signal.SIGTERM)
        code = dev.proc.wait(60)
        assert code == 0, dev.output()
        assert "stopped." in dev.output()
        left = [pid for pid in dev.children if _alive(pid)]
        assert left == [], f"children still running: {left}"
        assert not any(_listening(p) for p in dev.ports.values())
    finally:
        if dev.proc.poll() is None or any(_alive(pid) for pid in dev.children):
            dev.kill_all()


def test_the_chat_page_shows_a_streamed_reply_growing_and_stops_it(
    tmp_path: Path, agent: ServerProcess, browser_page: Any
) -> None:
    """STREAM_MODE=edit (the default): the bot's bubble grows while the agent streams, and the
    page's stop button sends what a user would (`/stop`), which closes the agent's stream."""
    import httpx
    from playwright.sync_api import expect

    httpx.post(agent.url + "/control", json={"mode": "stream", "delay": 0.25, "words": 80})
    page = browser_page
    dev = DevStack(tmp_path, agent.url)
    try:
        page.goto(dev.wait_url())
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        page.get_by_test_id("new-user-name").fill("Streaming Sam")
        page.get_by_test_id("create-user").click()
        page.get_by_test_id("message-input").fill("write slowly")
        page.get_by_test_id("send-button").click()
        bubble = page.locator("[data-testid=message][data-from=bot] .text").first
        expect(bubble).to_contain_text("Agent: write slowly")
        seen = {bubble.inner_text()}

        def grew_twice() -> bool:
            seen.add(bubble.inner_text())
            return len(seen) >= 3

        wait_until(grew_twice, timeout=15, what="the bubble to grow twice")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e-streaming.png"), full_page=True)
        page.get_by_test_id("stop-generation").click()
        wait_until(
            lambda: (
                httpx.get(agent.url + "/streams").json()[-1:]
                == [{"text": "write slowly", "outcome": "closed"}]
            ),
            timeout=10,
            what="the agent's stream to be closed by the stop",
        )
        expect(page.locator("[data-testid=message][data-from=user] .text").last).to_have_text(
            "/stop"
        )
        assert "w80" not in bubble.inner_text()  # stopped: what was shown is kept
    finally:
        dev.proc.send_signal(signal.SIGTERM)
        try:
            dev.proc.wait(60)
        finally:
            if dev.proc.poll() is None or any(_alive(pid) for pid in dev.children):
                dev.kill_all()
