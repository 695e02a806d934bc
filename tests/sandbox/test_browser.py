"""The web chat page, driven in Chromium: a user writes, a tiny bot (a getUpdates loop in a
thread) answers with an inline keyboard, the user presses the button and sees the answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.client import SandboxControl
from tests.sandbox.conftest import Bot
from tests.support.browser import ARTIFACTS, chromium_page
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


class EchoBot:
    """Answers each text with an inline keyboard and each button press with an answer + text."""

    def __init__(self, base_url: str) -> None:
        self.bot = Bot(base_url)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        offset = 0
        try:
            while not self.stop.is_set():
                for update in self.bot.ok("getUpdates", offset=offset, timeout=1):
                    offset = update["update_id"] + 1
                    self._handle(update)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def _handle(self, update: dict[str, Any]) -> None:
        if "message" in update and "text" in update["message"]:
            chat_id = update["message"]["chat"]["id"]
            self.bot.ok("sendChatAction", chat_id=chat_id, action="typing")
            keyboard = {"inline_keyboard": [[{"text": "Like 👍", "callback_data": "like"}]]}
            text = f"You said: {update['message']['text']}"
            self.bot.ok("sendMessage", chat_id=chat_id, text=text, reply_markup=keyboard)
        elif "callback_query" in update:
            query = update["callback_query"]
            self.bot.ok("answerCallbackQuery", callback_query_id=query["id"], text="Thanks!")
            chat_id = query["message"]["chat"]["id"]
            self.bot.ok("sendMessage", chat_id=chat_id, text=f"You pressed {query['data']}")

    def __enter__(self) -> EchoBot:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.bot.http.close()


@pytest.fixture
def browser_page(sandbox_server: ServerProcess) -> Iterator[Any]:
    with chromium_page(timeout_ms=10_000) as page:
        yield page


def test_chat_page_round_trip(
    control: SandboxControl, bot: Bot, sandbox_server: ServerProcess, browser_page: Any
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    with EchoBot(sandbox_server.url) as echo:
        page.goto(sandbox_server.url + "/")
        expect(page.get_by_test_id("bot-name")).to_have_text("Sandbox Bot")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        page.get_by_test_id("new-user-name").fill("Alice")
        page.get_by_test_id("create-user").click()
        user_item = page.locator("[data-testid=user-item].active")
        expect(user_item).to_contain_text("Alice")
        user_id = int(user_item.get_attribute("data-user-id"))

        # typing indicator follows sendChatAction
        bot.ok("sendChatAction", chat_id=user_id, action="typing")
        expect(page.get_by_test_id("typing-indicator")).to_be_visible()

        page.get_by_test_id("message-input").fill("hello bot")
        page.get_by_test_id("send-button").click()
        expect(page.locator("[data-testid=message][data-from=user] .text")).to_have_text(
            ["hello bot"]
        )
        reply = page.locator("[data-testid=message][data-from=bot] .text")
        expect(reply).to_have_text(["You said: hello bot"])
        expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
        button = page.get_by_test_id("inline-button")
        expect(button).to_have_text("Like 👍")
        button.click()
        expect(page.get_by_test_id("callback-answer")).to_have_text("Thanks!")
        expect(reply).to_have_text(["You said: hello bot", "You pressed like"])
        page.screenshot(path=str(ARTIFACTS / "sandbox-chat.png"), full_page=True)
        assert not echo.errors, echo.errors
    assert [m["text"] for m in control.messages(user_id)] == [
        "hello bot",
        "You said: hello bot",
        "You pressed like",
    ]
    assert control.callback_answers()[0]["text"] == "Thanks!"


def test_live_events_while_a_chat_loads_are_kept(
    control: SandboxControl, bot: Bot, sandbox_server: ServerProcess, browser_page: Any
) -> None:
    """A typing action and a message that arrive while the page is still fetching the chat's
    transcript show once it is loaded (they used to be overwritten by the older fetch)."""
    from playwright.sync_api import expect

    page = browser_page
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    held: list[Any] = []  # the transcript request, answered when the test says so
    page.route("**/sandbox/chats/*/messages", lambda route: held.append(route))
    page.goto(sandbox_server.url + "/")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    page.get_by_test_id("new-user-name").fill("Bea")
    page.get_by_test_id("create-user").click()
    _pump_until(page, lambda: bool(held), "the page to ask for the transcript")
    user_id = int(page.locator("[data-testid=user-item].active").get_attribute("data-user-id"))
    bot.ok("sendMessage", chat_id=user_id, text="said while the page was loading")
    bot.ok("sendChatAction", chat_id=user_id, action="typing")  # after: a message ends typing
    _pump_until(
        page,
        lambda: any('"typing"' in f for f in frames),
        "the page to receive both events",
    )
    held[0].fulfill(json=[])  # a transcript fetched before the bot spoke
    expect(page.get_by_test_id("typing-indicator")).to_be_visible()
    expect(page.locator("[data-testid=message][data-from=bot] .text")).to_have_text(
        ["said while the page was loading"]
    )


def _pump_until(page: Any, predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Poll with a deadline, letting Playwright dispatch its events between looks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(20)
