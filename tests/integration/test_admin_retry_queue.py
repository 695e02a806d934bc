"""A history write the User Service refuses for good ends dead, visible at the admin API
(issue 14): not retried forever, listed by `GET /admin/retry-queue`, given another go by
`POST /admin/retry-queue/{id}/retry`. Through the app, with a User Service answering 422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.user_client import UserServiceClient
from tests.integration.test_webhook import Client, running

ADMIN = {"X-Admin-Token": "admin-token"}


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Client]:
    async with running(f"sqlite:///{tmp_path / 'gw.db'}") as c:
        yield c


async def test_a_refused_history_write_is_dead_at_the_admin_api(lite: Client) -> None:
    posts: list[str] = []

    def user_service(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # "is it stored already?": no
            return httpx.Response(200, json=[])
        posts.append(request.url.path)
        return httpx.Response(422, json={"detail": "metadata too large"})

    gateway = lite.app.state.gateway
    async with httpx.AsyncClient(transport=httpx.MockTransport(user_service)) as http:
        gateway.retry_queue.writer = UserServiceClient(http, "http://users.test")
        payload = {"user_id": "u1", "message_text": "hi", "telegram_message_id": 5}
        await gateway.retry_queue.enqueue(payload, dedupe_key="in:1")

        flushed = await lite.http.post("/admin/flush-retries", headers=ADMIN)
        assert flushed.json() == {"flushed": 0, "remaining": 0}  # not waiting: dead
        assert posts == ["/api/interactions"]
        listing = (await lite.http.get("/admin/retry-queue", headers=ADMIN)).json()
        assert (listing["size"], listing["dead"]) == (0, 1)
        [item] = listing["items"]
        assert item["state"] == "dead" and item["attempts"] == 1
        assert "422" in item["last_error"] and item["payload"]["message_text"] == "hi"

        await lite.http.post("/admin/flush-retries", headers=ADMIN)
        assert posts == ["/api/interactions"]  # a dead row is not sent again by itself

        r = await lite.http.post(f"/admin/retry-queue/{item['id']}/retry", headers=ADMIN)
        assert r.status_code == 200
        assert (await lite.http.get("/admin/retry-queue", headers=ADMIN)).json()["size"] == 1
        r = await lite.http.post(f"/admin/retry-queue/{item['id'] + 1}/retry", headers=ADMIN)
        assert r.status_code == 404
