"""Fixtures: real Agent Service processes per backend, and the stand-in upstream.

Processes are session-scoped (a start costs about a second); tests keep out of each other's
way through the stand-in's script queue, which `stub` clears before every test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.agent_service.openai_stub import Stub, openai_stub_process
from tests.support.agent_service import agent_service_process
from tests.support.servers import ServerProcess

API_KEY = "agent-test-key-7f3a"
UPSTREAM_KEY = "sk-upstream-test-9c1d"
#: Short, so stalls are proven to end at the deadline without slowing the suite.
UPSTREAM_TIMEOUT = 1.5


@dataclass
class Agent:
    """A running agent service and a client for it."""

    server: ServerProcess
    api_key: str | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def post(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 30)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.post(self.url + "/api/respond", json=body, headers=headers, **kwargs)

    def stream(
        self, body: dict[str, Any], **kwargs: Any
    ) -> tuple[httpx.Response, list[tuple[str, Any]]]:
        """POST with `"stream": true`; the response (read) and its events as (name, data)."""
        kwargs.setdefault("timeout", 30)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        with httpx.stream(
            "POST",
            self.url + "/api/respond",
            json={**body, "stream": True},
            headers=headers,
            **kwargs,
        ) as response:
            raw = response.read().decode()
        return response, parse_sse(raw) if response.status_code == 200 else []


def parse_sse(raw: str) -> list[tuple[str, Any]]:
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, json.loads("\n".join(data))))
    return events


def joined(events: list[tuple[str, Any]]) -> str:
    return "".join(data["text"] for name, data in events if name == "delta")


@pytest.fixture(scope="session")
def stub_server() -> Iterator[ServerProcess]:
    with openai_stub_process() as server:
        yield server


@pytest.fixture
def stub(stub_server: ServerProcess) -> Stub:
    s = Stub(stub_server)
    s.clear()
    return s


@pytest.fixture(scope="session")
def demo() -> Iterator[Agent]:
    with agent_service_process(AGENT_BACKEND="demo") as server:
        yield Agent(server)


@pytest.fixture(scope="session")
def openai_agent(stub_server: ServerProcess) -> Iterator[Agent]:
    """The `openai` backend in front of the stand-in, with keys on both sides."""
    with agent_service_process(
        AGENT_BACKEND="openai",
        OPENAI_BASE_URL=stub_server.url + "/v1",
        OPENAI_API_KEY=UPSTREAM_KEY,
        AGENT_SERVICE_API_KEY=API_KEY,
        AGENT_MODEL="stub-model",
        AGENT_SYSTEM_PROMPT="You are a test.",
        AGENT_TEMPERATURE="0",
        AGENT_MAX_TOKENS="64",
        AGENT_HISTORY_BUDGET="200",
        AGENT_UPSTREAM_TIMEOUT=str(UPSTREAM_TIMEOUT),
    ) as server:
        yield Agent(server, API_KEY)
