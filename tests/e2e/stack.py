"""The whole system as real processes on 127.0.0.1, for the end-to-end tests.

`Stack` starts the Telegram sandbox, the reference User Service (SQLite file), the agent
stand-in and the gateway (SQLite file) through `app.devstack.LocalStack`, the module `messaging
dev` uses, and offers the helpers the tests need: restart the User Service or the gateway on the
same port (and the same database), read a user's history, call the admin API, poll the agent
stand-in.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from app.devstack import LocalStack
from sandbox.client import SandboxControl
from tests.support.agent_stub import agent_process
from tests.support.servers import ServerProcess, free_port, wait_until

JSON = dict[str, Any]
BUSY = "Agent tạm thời bận, vui lòng thử lại sau."
USERS_KEY = "e2e-users-key"
ADMIN_TOKEN = "e2e-admin-token"

#: Gateway settings for a fast suite (the brief's values); tests may override any of them.
FAST_GATEWAY: dict[str, str] = {
    "LEASE_SECONDS": "3",
    "RETRY_BASE_DELAY": "0.2",
    "RETRY_MAX_DELAY": "1",
    "RETRY_FLUSH_INTERVAL": "1",
    "POLL_INTERVAL": "0.2",
    "AGENT_TIMEOUT": "2",
    "REQUEST_TIMEOUT": "3",
    # DEBUG makes httpx log every request URL (Telegram's carry the token): the log test below
    # checks that the redactor catches them.
    "LOG_LEVEL": "DEBUG",
}


def _start_all(*servers: ServerProcess) -> None:
    """Start independent servers in parallel (start-up is most of a module's set-up time)."""
    errors: list[BaseException] = []

    def run(server: ServerProcess) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for s in servers:
            s.kill()
        raise errors[0]


class Stack:
    """The local stack of `app.devstack` (the one `messaging dev` runs), for the tests.

    The sandbox gets fast webhook retries, the agent is the stand-in (`agent=True`) or what the
    test sets with `AGENT_SERVICE_BASE`, and the gateway runs with `FAST_GATEWAY` settings.
    """

    def __init__(self, state: Path, *, agent: bool = True, **gateway_env: str) -> None:
        self.state = state
        self.agent = agent_process() if agent else None
        agent_url = gateway_env.pop("AGENT_SERVICE_BASE", None)
        if self.agent is not None:
            agent_url = self.agent.url
        self.plan = LocalStack(
            state,
            agent="none",
            agent_url=agent_url or None,
            users_key=USERS_KEY,
            admin_token=ADMIN_TOKEN,
            webhook_secret=secrets.token_urlsafe(24),
            log_dir=Path(os.environ.get("TEST_LOG_DIR") or state / "logs"),
            sandbox_env={
                "SANDBOX_WEBHOOK_RETRY_DELAYS": "0.05,0.1,0.2,0.5",
                "SANDBOX_WEBHOOK_TIMEOUT": "5",
            },
            gateway_env={**FAST_GATEWAY, "AGENT_SERVICE_API_KEY": "", **gateway_env},
        )
        self.secret = self.plan.webhook_secret
        self.sandbox = self.plan.sandbox()
        self.users = self.plan.users()
        self.gateway_port = self.plan.gateway_port
        self.gateway_env = self.plan.gateway_env
        self.gateway = self._gateway_process()
        self.ctl = SandboxControl(self.sandbox.url)
        self.http = httpx.Client(timeout=10)

    # --- processes ---------------------------------------------------------------------------
    def _gateway_process(
        self, port: int | None = None, name: str = "gateway", **overrides: str
    ) -> ServerProcess:
        return self.plan.gateway(port=port, name=name, **overrides)

    def start(self) -> Stack:
        _start_all(*[s for s in (self.sandbox, self.users, self.agent) if s is not None])
        self.start_gateway()
        return self

    def close(self) -> None:
        for server in (self.gateway, self.agent, self.users, self.sandbox):
            if server is not None:
                server.stop()
        self.ctl.close()
        self.http.close()

    def gateway_running(self) -> bool:
        return self.gateway.running

    def start_gateway(self) -> None:
        """Start the gateway (same port, same database) and wait until its webhook is set."""
        if not self.gateway_running():
            self.gateway = self._gateway_process()
            self.gateway.start()
        wait_until(
            lambda: self.ctl.info()["webhook"]["url"] == self.webhook_url,
            timeout=15,
            what="the gateway to register its webhook",
        )

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/webhook/telegram"

    @contextmanager
    def other_gateway(self, name: str, **overrides: str) -> Iterator[ServerProcess]:
        """A second gateway (own port and database, `overrides` on top of this stack's
        settings) that takes the webhook over; on exit the webhook points back at ours."""
        other = self._gateway_process(free_port(), name=name, **overrides)
        other.start()
        try:
            wait_until(
                lambda: self.ctl.info()["webhook"]["url"].startswith(other.url),
                timeout=15,
                what=f"{name} to register its webhook",
            )
            yield other
        finally:
            other.stop()
            response = self.http.post(
                self.ctl.bot_api_url("setWebhook"),
                json={"url": self.webhook_url, "secret_token": self.secret},
            )
            assert response.json()["ok"], response.text

    def kill_gateway(self) -> None:
        """kill -9: no shutdown code runs."""
        self.gateway.kill()

    def stop_gateway(self) -> int | None:
        """SIGTERM (graceful shutdown); the exit code."""
        return self.gateway.stop()

    def stop_users(self) -> None:
        self.users.stop()

    def start_users(self) -> None:
        """Start the User Service again on the same port, with the same database."""
        if self.users.proc is None or self.users.proc.poll() is not None:
            self.users.start()

    # --- reading back ------------------------------------------------------------------------
    def users_api(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(self.users.url + path, params=params, headers={"X-API-Key": USERS_KEY})

    def user(self, telegram_id: int) -> JSON | None:
        response = self.users_api(f"/api/users/by-telegram/{telegram_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def history(self, telegram_id: int) -> list[JSON]:
        """The user's interactions, oldest first ([] for an unknown user)."""
        user = self.user(telegram_id)
        if user is None:
            return []
        response = self.users_api(f"/api/interactions/{user['id']}", limit=200)
        response.raise_for_status()
        return list(reversed(response.json()))

    def wait_history(self, telegram_id: int, count: int, timeout: float = 15) -> list[JSON]:
        rows: list[JSON] = []

        def enough() -> bool:
            nonlocal rows
            rows = self.history(telegram_id)
            return len(rows) >= count

        wait_until(enough, timeout=timeout, what=f"{count} history rows of {telegram_id}")
        return rows

    def admin(self, method: str, path: str, **kwargs: Any) -> JSON:
        response = self.http.request(
            method, self.gateway.url + path, headers={"X-Admin-Token": ADMIN_TOKEN}, **kwargs
        )
        response.raise_for_status()
        return dict(response.json())

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the gateway's Prometheus metrics (0 when absent)."""
        text = self.http.get(self.gateway.url + "/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            key, value = line.rsplit(" ", 1)
            sample, _, rest = key.partition("{")
            if sample == name and rest.rstrip("}") == want:
                return float(value)
        return 0.0

    def webhook_post(self, content: bytes, secret: str | None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return self.http.post(
            self.gateway.url + "/webhook/telegram", content=content, headers=headers
        )

    # --- the agent stand-in ------------------------------------------------------------------
    def agent_control(self, mode: str = "echo", delay: float = 0.0, **more: Any) -> None:
        assert self.agent is not None
        self.http.post(
            self.agent.url + "/control", json={"mode": mode, "delay": delay, **more}
        ).raise_for_status()

    def agent_streams(self) -> list[JSON]:
        """How each stream the agent stand-in served ended ("done" / "closed")."""
        assert self.agent is not None
        return list(self.http.get(self.agent.url + "/streams").json())

    def agent_download(self, enabled: bool = True) -> None:
        """Make the stand-in fetch every attachment through the gateway's URL."""
        assert self.agent is not None
        self.http.post(self.agent.url + "/control", json={"download": enabled}).raise_for_status()

    def agent_downloads(self) -> list[JSON]:
        """What the stand-in got for each URL it fetched (status, size, sha256, headers...)."""
        assert self.agent is not None
        return list(self.http.get(self.agent.url + "/downloads").json())

    def agent_requests(self, chat_id: int | None = None) -> list[JSON]:
        """Bodies the agent received (for one chat when `chat_id` is given), in order."""
        assert self.agent is not None
        bodies = self.http.get(self.agent.url + "/requests").json()
        return [b for b in bodies if chat_id is None or b.get("chat_id") == chat_id]

    def wait_agent_requests(self, chat_id: int, count: int, timeout: float = 10) -> list[JSON]:
        found: list[JSON] = []

        def enough() -> bool:
            nonlocal found
            found = self.agent_requests(chat_id)
            return len(found) >= count

        wait_until(enough, timeout=timeout, what=f"{count} agent requests for chat {chat_id}")
        return found

    # --- the user's side ---------------------------------------------------------------------
    def new_user(self, first_name: str, last_name: str | None = None) -> int:
        return int(self.ctl.create_user(first_name, last_name=last_name)["id"])

    def texts(self, chat_id: int) -> list[str]:
        return [str(m.get("text", "")) for m in self.ctl.bot_messages(chat_id)]

    def wait_texts(self, chat_id: int, count: int, timeout: float = 15) -> list[str]:
        messages = self.ctl.wait_for_bot_messages(chat_id, count, timeout=timeout)
        return [str(m.get("text", "")) for m in messages]


@contextmanager
def running_stack(state: Path, *, agent: bool = True, **gateway_env: str) -> Iterator[Stack]:
    stack = Stack(state, agent=agent, **gateway_env)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
