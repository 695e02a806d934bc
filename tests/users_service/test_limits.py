"""Bodies are bounded before anything parses them, and an aborted upload is no error (issue 14).

The probe stored 5.5 MB of metadata and had the service parse a 40 MB body. One real process
with small limits (`MAX_BODY_BYTES`, `MAX_METADATA_BYTES`) on SQLite; raw sockets where the test
must control exactly what is sent (a declared size with no body, a chunked body that never ends,
a client that hangs up), httpx where an ordinary client is the point.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import ServerProcess, wait_until
from tests.support.users_service import users_service_process
from tests.users_service.conftest import Service, new_telegram_id

API_KEY = "limits-key-not-secret"
BODY_LIMIT = 64 * 1024
METADATA_LIMIT = 16 * 1024
HANG_UP = "client disconnected during upload"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Service]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('users-limits') / 'users.db'}"
    env = {"MAX_BODY_BYTES": str(BODY_LIMIT), "MAX_METADATA_BYTES": str(METADATA_LIMIT)}
    with users_service_process(url, API_KEY, env=env) as proc:
        yield proc, Service("sqlite", proc.url, url, API_KEY)


@pytest.fixture
def client(limited: tuple[ServerProcess, Service]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited[1].url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


@pytest.fixture
def user_id(client: httpx.Client) -> str:
    r = client.post("/api/users/register", json={"telegram_id": new_telegram_id()})
    assert r.status_code == 201, r.text
    uid: str = r.json()["id"]
    return uid


def connect(proc: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
    return sock


def request_head(path: str, headers: dict[str, str], key: str | None = API_KEY) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if key is not None:
        lines.append(f"X-API-Key: {key}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, Any]:
    """Status and JSON body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.split(": ", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in fields.items()}["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response body"
        body += chunk
    return status, json.loads(body[:length])


def interactions_of(service: Service, user_id: str) -> int:
    count = asyncio.run(
        service.scalar(
            "SELECT count(*) FROM interactions WHERE user_id = :uid", uid=uuid.UUID(user_id).hex
        )
    )
    return int(count)


def test_declared_oversize_is_refused_before_a_byte_is_sent(
    limited: tuple[ServerProcess, Service],
) -> None:
    proc, _ = limited
    with connect(proc) as sock:  # headers only: the answer cannot depend on reading the body
        sock.sendall(request_head("/api/interactions", {"Content-Length": "40000000"}))
        status, body = read_response(sock)
    assert status == 413
    assert body == {"detail": f"request body is larger than {BODY_LIMIT} bytes (MAX_BODY_BYTES)"}
    with connect(proc) as sock:  # no key: 401 first, as documented (the key is checked first)
        sock.sendall(request_head("/api/interactions", {"Content-Length": "40000000"}, key=None))
        assert read_response(sock)[0] == 401


def test_streamed_oversize_is_cut_off_at_the_limit(limited: tuple[ServerProcess, Service]) -> None:
    proc, _ = limited
    piece = b"x" * 8192
    with connect(proc) as sock:
        sock.sendall(request_head("/api/users/register", {"Transfer-Encoding": "chunked"}))
        for _ in range(BODY_LIMIT // len(piece) + 1):  # one piece over, and no final chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        status, body = read_response(sock)
    assert status == 413, body
    assert "MAX_BODY_BYTES" in body["detail"]


def test_huge_body_gets_413_nothing_is_stored_and_the_server_carries_on(
    limited: tuple[ServerProcess, Service], client: httpx.Client, user_id: str
) -> None:
    """The probe's 40 MB body, from an ordinary client that sends all of it."""
    big = {"user_id": user_id, "direction": "in", "metadata": {"blob": "x" * 40_000_000}}
    r = client.post(
        "/api/interactions",
        content=json.dumps(big).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["detail"].endswith("(MAX_BODY_BYTES)")
    assert interactions_of(limited[1], user_id) == 0
    ok = client.post("/api/interactions", json={"user_id": user_id, "direction": "in"})
    assert ok.status_code == 201, ok.text
    assert interactions_of(limited[1], user_id) == 1


def test_metadata_over_its_cap_is_422_and_not_stored(
    limited: tuple[ServerProcess, Service], client: httpx.Client, user_id: str
) -> None:
    def body(size: int) -> dict[str, Any]:
        # {"b":"xxx..."} is size + 8 bytes of JSON
        return {"user_id": user_id, "direction": "in", "metadata": {"b": "x" * (size - 8)}}

    r = client.post("/api/interactions", json=body(METADATA_LIMIT + 1))
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "metadata"]
    assert error["msg"] == f"metadata is larger than {METADATA_LIMIT} bytes (MAX_METADATA_BYTES)"
    assert "input" not in error  # the refused value is not echoed back
    assert interactions_of(limited[1], user_id) == 0

    r = client.post("/api/interactions", json=body(METADATA_LIMIT))  # exactly at the cap
    assert r.status_code == 201, r.text
    multibyte = {"user_id": user_id, "direction": "in", "metadata": {"b": "é" * METADATA_LIMIT}}
    r = client.post("/api/interactions", json=multibyte)  # bytes count, not characters
    assert r.status_code == 422, r.text
    assert interactions_of(limited[1], user_id) == 1


def test_hang_up_mid_upload_is_info_and_others_are_served(
    limited: tuple[ServerProcess, Service], client: httpx.Client
) -> None:
    proc, _ = limited
    before = proc.output().count(HANG_UP)
    declared = connect(proc)
    declared.sendall(request_head("/api/users/register", {"Content-Length": "50000"}))
    declared.sendall(b'{"telegram_id": 1, "full_name": "' + b"a" * 1000)
    chunked = connect(proc)
    chunked.sendall(request_head("/api/interactions", {"Transfer-Encoding": "chunked"}))
    chunked.sendall(b'5\r\n{"use\r\n')
    # Two uploads hang half-way; the service answers everyone else meanwhile.
    assert client.get("/health").status_code == 200
    assert client.post("/api/users/register", json={"telegram_id": new_telegram_id()}).is_success
    declared.close()
    chunked.close()
    wait_until(lambda: proc.output().count(HANG_UP) >= before + 2, what="two INFO hang-up lines")
    out = proc.output()
    hang_ups = [line for line in out.splitlines() if HANG_UP in line]
    assert all(json.loads(line)["level"] == "info" for line in hang_ups), hang_ups
    assert '"level": "error"' not in out and "Traceback" not in out, out
