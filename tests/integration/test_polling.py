"""`UPDATE_MODE=polling`: the gateway long-polls the sandbox instead of receiving webhooks."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.client import SandboxControl
from tests.support.sandbox import SANDBOX_TOKEN, sandbox_process
from tests.support.servers import ServerProcess, wait_until
from tests.support.users_service import users_service_process


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SandboxControl, ServerProcess]]:
    state = tmp_path_factory.mktemp("polling")
    with (
        sandbox_process() as sandbox,
        users_service_process(f"sqlite:///{state / 'users.db'}") as users,
    ):
        # A stale webhook, as left by an earlier deployment: the poller must remove it.
        httpx.post(
            f"{sandbox.url}/bot{SANDBOX_TOKEN}/setWebhook",
            json={"url": "http://127.0.0.1:9/nowhere"},
            timeout=5,
        ).raise_for_status()
        env = {
            "BOT_TOKEN": SANDBOX_TOKEN,
            "TELEGRAM_API_BASE": sandbox.url,
            "USER_SERVICE_BASE": users.url,
            "DATABASE_URL": f"sqlite:///{state / 'gw.db'}",
            "UPDATE_MODE": "polling",
            "POLL_INTERVAL": "0.2",
            # One reply per message, as the checks below count them (turns: tests/e2e/test_turns).
            "TURN_MODE": "queue",
        }
        with ServerProcess("app.main:app", env, ready_path="/ready", name="gateway-polling") as gw:
            ctl = SandboxControl(sandbox.url)
            yield ctl, gw
            ctl.close()


def test_messages_arrive_by_long_polling_and_are_answered_once(
    stack: tuple[SandboxControl, ServerProcess],
) -> None:
    ctl, gw = stack
    wait_until(
        lambda: (
            httpx.get(f"{ctl.base_url}/bot{SANDBOX_TOKEN}/getWebhookInfo", timeout=5).json()[
                "result"
            ]["url"]
            == ""
        ),
        timeout=20,
        what="the poller to delete the stale webhook",
    )
    user = ctl.create_user("Poll")["id"]
    for text in ("one", "two", "three"):
        ctl.send_text(user, text)
    replies = ctl.wait_for_bot_messages(user, 3, timeout=30)
    assert [m["text"].split("\n")[0] for m in replies] == [
        "You said: one",
        "You said: two",
        "You said: three",
    ]
    # Confirmed by offset: nothing left for getUpdates, and a later message gets one reply.
    wait_until(lambda: ctl.pending_updates() == [], timeout=30, what="updates to be confirmed")
    ctl.send_text(user, "four")
    replies = ctl.wait_for_bot_messages(user, 4, timeout=30)
    # Per-chat order: a repeat of an earlier message would have been answered before "four".
    assert len(replies) == 4 and replies[-1]["text"].startswith("You said: four")
    assert "polling for updates" in gw.output()
