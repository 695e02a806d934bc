"""Fixtures: one real sandbox process per session (reset before each test), a bot-side HTTP
helper and a webhook receiver running in a thread."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sandbox.client import SandboxControl
from tests.support.sandbox import RELAXED_LIMITS, SANDBOX_TOKEN, sandbox_process
from tests.support.servers import ServerProcess


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[ServerProcess]:
    # Flood limits are lifted for the suite; the limit tests set their own with PUT /limits.
    with sandbox_process(
        webhook_retry_delays="0.05,0.1,0.2", webhook_timeout=2, **RELAXED_LIMITS
    ) as server:
        yield server


@pytest.fixture(scope="session")
def _control_client(sandbox_server: ServerProcess) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox_server.url) as ctl:
        yield ctl


@pytest.fixture
def control(_control_client: SandboxControl) -> SandboxControl:
    """The control client, with the sandbox reset to a blank state for this test."""
    _control_client.reset()
    return _control_client


class Bot:
    """The bot's side: calls ``{base}/bot{token}/{method}`` like any Bot API client."""

    def __init__(self, base_url: str, token: str = SANDBOX_TOKEN) -> None:
        self.base = f"{base_url}/bot{token}"
        self.http = httpx.Client(timeout=30)

    def raw(self, method: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.base}/{method}", **kwargs)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.raw(method, json=params).json()
        return body

    def ok(self, method: str, **params: Any) -> Any:
        body = self.call(method, **params)
        assert body["ok"], body
        return body["result"]


@pytest.fixture(scope="session")
def bot(sandbox_server: ServerProcess) -> Iterator[Bot]:
    b = Bot(sandbox_server.url)
    yield b
    b.http.close()


class WebhookReceiver:
    """A tiny HTTP server that records every POST and answers with scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.statuses: list[int] = []  # answered in order; 200 once exhausted
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[Any]:
        with self.lock:
            return [b for _, b in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()
