"""Aborted and slow uploads to the real gateway process (issue 14): a client that hangs up
mid-body is one INFO line (it was an ERROR traceback, "Exception in ASGI application", for
every aborted upload), a body that stalls gets 408 after `WEBHOOK_BODY_TIMEOUT`, and everyone
else is served meanwhile. Raw sockets, because the test must control exactly what is sent."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ServerProcess, wait_until

SECRET = "hangup-Secret_1"
HANG_UP = "webhook client hung up before sending the whole body"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("gw-hangups")
    env = {
        "BOT_TOKEN": "123:abc",
        "USER_SERVICE_BASE": "http://127.0.0.1:9",
        "WEBHOOK_SECRET_TOKEN": SECRET,
        "WEBHOOK_URL": "",
        "DATABASE_URL": f"sqlite:///{folder / 'gw.db'}",
        "PROCESSING_ENABLED": "false",
        "WEBHOOK_BODY_TIMEOUT": "1",
        "LOG_LEVEL": "INFO",
    }
    with ServerProcess("app.main:app", env, ready_path="/ready", log_dir=folder) as proc:
        yield proc


def head(headers: dict[str, str]) -> bytes:
    lines = [
        "POST /webhook/telegram HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"X-Telegram-Bot-Api-Secret-Token: {SECRET}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def update(update_id: int) -> dict[str, object]:
    return {"update_id": update_id, "message": {"chat": {"id": 7}, "text": "hi"}}


def post(proc: ServerProcess, update_id: int) -> int:
    r = httpx.post(
        proc.url + "/webhook/telegram",
        json=update(update_id),
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        timeout=10,
    )
    return r.status_code


def test_hang_ups_mid_body_are_info_and_others_are_served(gateway: ServerProcess) -> None:
    before = gateway.output().count(HANG_UP)
    declared = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    declared.sendall(head({"Content-Length": "50000"}) + b'{"update_id": 1, "message": {"te')
    chunked = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    chunked.sendall(head({"Transfer-Encoding": "chunked"}) + b'5\r\n{"upd\r\n')
    assert post(gateway, 10) == 200  # served while two uploads hang half-way
    declared.close()
    chunked.close()
    wait_until(lambda: gateway.output().count(HANG_UP) >= before + 2, what="two hang-up lines")
    lines = [json.loads(line) for line in gateway.output().splitlines() if line.startswith("{")]
    assert all(line["level"] == "info" for line in lines if HANG_UP in line["message"])
    assert [line for line in lines if line["level"] in ("error", "critical")] == []
    assert "Traceback" not in gateway.output()


def test_a_stalled_body_gets_408_and_the_gateway_carries_on(gateway: ServerProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    try:
        sock.sendall(head({"Content-Length": "5000"}) + b'{"update_id": 2, ')
        answer = b""
        while b"\r\n" not in answer:  # the gateway answers on its own, after its deadline
            chunk = sock.recv(4096)
            assert chunk, "closed without an answer"
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert post(gateway, 11) == 200
