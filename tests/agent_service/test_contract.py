"""The HTTP contract, the same for every backend: JSON, SSE framing, errors, key, OpenAPI.

`agent` is parametrized over the demo backend and the openai backend in front of the
stand-in upstream (the local model's run of the same contract is in test_local_model.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.agent_service.conftest import Agent, joined
from tests.agent_service.openai_stub import Stub

TURN: dict[str, Any] = {
    "user": {"id": "0b4f", "telegram_id": 42, "full_name": "Minh"},
    "text": "hello there",
    "chat_id": 42,
    "message_id": 7,
    "command": None,
    "kind": "message",
    "history": [
        {"direction": "in", "text": "earlier", "created_at": "2026-01-01T00:00:00Z"},
        {"direction": "out", "text": "You said: earlier", "created_at": "2026-01-01T00:00:01Z"},
    ],
}


@pytest.fixture(params=["demo", "openai"])
def agent(request: pytest.FixtureRequest, stub: Stub) -> Agent:
    return request.getfixturevalue("demo" if request.param == "demo" else "openai_agent")  # type: ignore[no-any-return]


def test_json_answer_has_reply_and_actions(agent: Agent) -> None:
    response = agent.post(TURN)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"reply", "actions"}
    assert isinstance(body["reply"], str) and body["reply"].strip()
    assert isinstance(body["actions"], list)


def test_the_gateways_body_with_extra_fields_and_nulls_is_accepted(agent: Agent) -> None:
    body = {
        **TURN,
        "future_field": {"x": 1},
        "history": [{"direction": None, "text": None, "created_at": None}, {"direction": "in"}],
        "attachments": [
            {"kind": "photo", "mime_type": "image/jpeg", "size": 10, "url": "http://gw/f/1"}
        ],
        "parts": [{"text": "hello", "message_id": 7}, {"text": "there", "message_id": 8}],
    }
    assert agent.post(body).status_code == 200


@pytest.mark.parametrize("how", ["body", "accept"])
def test_sse_stream_is_deltas_then_done(agent: Agent, how: str) -> None:
    if how == "body":
        response, events = agent.stream(TURN)
    else:
        with httpx.stream(
            "POST",
            agent.url + "/api/respond",
            json=TURN,
            headers={**agent.headers, "Accept": "text/event-stream"},
            timeout=30,
        ) as response:
            from tests.agent_service.conftest import parse_sse

            events = parse_sse(response.read().decode())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) >= 3
    done = events[-1][1]
    assert set(done) == {"reply", "actions"}
    assert joined(events) == done["reply"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": {}}, "text"),
        ({"text": 12}, "text"),
        ({"text": "x", "history": "not a list"}, "history"),
        ({"text": "x", "history": [{"direction": "in", "text": 5}]}, "history"),
        ({"text": "x", "user": "nobody"}, "user"),
        ({"text": "x", "stream": "maybe"}, "stream"),
        ({"text": "x", "attachments": [{"mime_type": "image/png"}]}, "attachments"),
        ({"text": "x" * 100_001}, "text"),
    ],
)
def test_bad_bodies_get_422_naming_the_field(
    agent: Agent, body: dict[str, Any], field: str
) -> None:
    response = agent.post(body)
    assert response.status_code == 422, response.text
    assert field in {str(part) for err in response.json()["detail"] for part in err["loc"]}


@pytest.mark.parametrize(
    "content",
    [b"not json", b"", b"[1, 2]", b'{"text": "\xff\xfe"}', b'{"text": NaN}', b"\x00" * 10],
)
def test_unparseable_bodies_are_4xx_never_500(agent: Agent, content: bytes) -> None:
    response = httpx.post(
        agent.url + "/api/respond",
        content=content,
        headers={**agent.headers, "content-type": "application/json"},
        timeout=10,
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


def test_too_large_body_is_413(agent: Agent) -> None:
    response = agent.post(
        {"text": "x", "history": [{"direction": "in", "text": "y" * 90_000}] * 15}
    )
    assert response.status_code == 413


def test_health(agent: Agent) -> None:
    response = httpx.get(agent.url + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["backend"] in ("demo", "openai")


def test_openapi_documents_both_answers_and_the_errors(demo: Agent) -> None:
    doc = httpx.get(demo.url + "/openapi.json").json()
    op = doc["paths"]["/api/respond"]["post"]
    assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"401", "422", "502", "503", "504"} <= set(op["responses"])
    assert "Retry-After" in op["responses"]["503"]["headers"]
    assert "RespondIn" in doc["components"]["schemas"]
    assert doc["info"]["title"] == "Agent Service"


def test_api_key_is_required_when_configured(openai_agent: Agent, stub: Stub) -> None:
    url = openai_agent.url + "/api/respond"
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": openai_agent.api_key + "x"}):  # type: ignore[operator]
        response = httpx.post(url, json=TURN, headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == {"detail": "missing or invalid X-API-Key"}
    # Even a garbage body learns nothing before the key is checked.
    assert httpx.post(url, content=b"garbage", timeout=10).status_code == 401
    assert stub.requests() == []
    assert httpx.get(openai_agent.url + "/health").status_code == 200  # health stays open
    assert openai_agent.post(TURN).status_code == 200
