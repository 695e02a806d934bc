"""The database password never appears in a log line, whatever a driver or server says (issue 14).

Real processes, real output: the service is started against a port where nothing listens, a
database that does not exist, and a server that refuses the password (and quotes it back, see
`fake_postgres`), at start-up and while requests are being served; then its whole output is
searched for the password. The refusing server also records what it received, so a test cannot
pass because the password never left the service.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.support.fake_postgres import FakePostgres
from tests.support.pg import PG_ADMIN_DSN, require_postgres, temp_database
from tests.support.servers import ROOT, free_port, wait_until
from tests.support.users_service import users_service_process

PASSWORD = "S3cretPw-81c3"
API_KEY = "ApiKey-5e0b-secret"


def run_to_exit(argv_tail: list[str], database_url: str) -> tuple[int, str]:
    """Run an entry point that is expected to give up; its exit code and combined output."""
    argv = [sys.executable, *argv_tail]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "API_KEY": API_KEY,
        "LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=90)
    return proc.returncode, proc.stdout.decode(errors="replace") + proc.stderr.decode(
        errors="replace"
    )


def uvicorn_argv() -> list[str]:
    port = str(free_port())
    return ["-m", "uvicorn", "users_service.main:app", "--host", "127.0.0.1", "--port", port]


def assert_clean_failure(code: int, out: str, expected: str) -> None:
    assert code != 0, out
    assert PASSWORD not in out and API_KEY not in out, out
    assert "cannot use the database" in out, out
    assert expected in out, out
    assert "postgres:***@" in out, out  # which database, with the password masked


def test_nothing_listening_at_start() -> None:
    code, out = run_to_exit(uvicorn_argv(), f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/nope")
    assert_clean_failure(code, out, "ConnectionRefusedError")


@pytest.mark.postgres
def test_database_missing_on_the_real_server_at_start() -> None:
    require_postgres()
    host = PG_ADMIN_DSN.split("@", 1)[1].rsplit("/", 1)[0]
    name = f"nope_{uuid.uuid4().hex[:8]}"
    code, out = run_to_exit(uvicorn_argv(), f"postgresql://postgres:{PASSWORD}@{host}/{name}")
    assert_clean_failure(code, out, "does not exist")


@pytest.mark.parametrize("entry", ["uvicorn", "migrate"])
def test_password_refused_at_start(entry: str) -> None:
    """The local server trusts everyone, so a refusal comes from the stand-in server."""
    argv = uvicorn_argv() if entry == "uvicorn" else ["-m", "users_service", "migrate"]
    with FakePostgres() as fake:
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{fake.port}/users"
        code, out = run_to_exit(argv, url)
    assert PASSWORD in fake.passwords_seen  # the secret was sent and quoted back
    assert_clean_failure(code, out, "password authentication failed")


@pytest.mark.postgres
def test_password_refused_while_serving() -> None:
    """Connections die and the reconnect is refused: 503 for the caller, no password logged."""
    with temp_database("users_pw") as plain_url, FakePostgres(("127.0.0.1", 5432)) as proxy:
        database = plain_url.rsplit("/", 1)[1]
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{proxy.port}/{database}"
        proc = users_service_process(url, API_KEY, env={"LOG_LEVEL": "DEBUG"})
        with proc:
            headers = {"X-API-Key": API_KEY}
            with httpx.Client(base_url=proc.url, headers=headers, timeout=30) as client:
                r = client.post("/api/users/register", json={"telegram_id": 4242})
                assert r.status_code == 201, r.text
                proxy.refuse_logins()
                for _ in range(3):
                    r = client.get("/api/users/by-telegram/4242")
                    assert r.status_code == 503, r.text
                    assert r.json() == {"detail": "database unavailable"}
            wait_until(lambda: "database unavailable" in proc.output(), what="the 503 log line")
        out = proc.output()
    assert PASSWORD in proxy.passwords_seen
    assert PASSWORD not in out and API_KEY not in out, out


def test_redactor_rewrites_message_arguments_and_traceback() -> None:
    from users_service.logs import SecretRedactor

    redactor = SecretRedactor()
    redactor.update([PASSWORD, "abc"])  # too short to be redacted: ordinary words survive
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(redactor)
    log = logging.getLogger("users_service.test_redactor")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        log.warning("in the message %s and %r", PASSWORD, {"pw": PASSWORD})
        log.info("a tuple arg %s, an abc word", (1, PASSWORD))
        try:
            raise ConnectionError(f"server said {PASSWORD}")
        except ConnectionError:
            log.exception("connect failed")
        log.info("%s %s", "client:1", "GET / 200")  # untouched shape, as uvicorn.access uses
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert PASSWORD not in text, text
    assert text.count("***") >= 4, text
    assert "abc word" in text and "server said ***" in text and "client:1 GET / 200" in text


REDACTION_SCRIPT = f"""
import logging, logging.config
import uvicorn.config
logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)  # what `uvicorn` does before the import
from users_service.app import create_app
from users_service.config import load_settings
create_app(load_settings())
try:
    raise RuntimeError("driver said {PASSWORD}")
except RuntimeError:
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
logging.getLogger("uvicorn.access").info(
    '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/x?key={API_KEY}", "1.1", 200
)
logging.getLogger("asyncio").error("Task exception was never retrieved: {PASSWORD}")
logging.getLogger("sqlalchemy.pool").warning("reconnect with %s", "{PASSWORD}")
print("done", flush=True)
"""


def test_every_handler_in_the_process_redacts() -> None:
    """uvicorn's handlers, and logging's last resort for loggers without one, not just ours."""
    code, out = run_to_exit(
        ["-c", REDACTION_SCRIPT], f"postgresql://postgres:{PASSWORD}@127.0.0.1/users"
    )
    assert code == 0 and "done" in out, out
    assert PASSWORD not in out and API_KEY not in out, out
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    rendered = "\n".join(f"{x['message']}\n{x.get('exception', '')}" for x in lines)
    for line in (
        "RuntimeError: driver said ***",
        '"GET /x?key=*** HTTP/1.1" 200',
        "Task exception was never retrieved: ***",
        "reconnect with ***",
    ):
        assert line in rendered, out
