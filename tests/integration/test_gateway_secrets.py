"""No secret of the gateway's configuration reaches a log line or an error, even at DEBUG:
passwords in `DATABASE_URL` (including what the driver says when the login fails) and in the
User Service / Agent Service URLs, tokens and keys. Real processes, real output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.fake_postgres import FakePostgres
from tests.support.servers import ROOT, free_port

DB_PASSWORD = "Db-Passw0rd-never-logged"
USERS_PASSWORD = "Us3r-Passw0rd-never-logged"
AGENT_PASSWORD = "Ag3nt-Passw0rd-never-logged"
TOKEN = "123456789:AAsecret-token-never-logged-at-all"
KEY = "users-key-never-logged"


def _env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "BOT_TOKEN": TOKEN,
        "USER_SERVICE_BASE": f"http://gw:{USERS_PASSWORD}@127.0.0.1:9",
        "USER_SERVICE_API_KEY": KEY,
        "AGENT_SERVICE_BASE": f"http://gw:{AGENT_PASSWORD}@127.0.0.1:9",
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "DEBUG",
        "WEBHOOK_SECRET_TOKEN": "webhook-secret-never-logged",
    }


def _assert_clean(output: str) -> None:
    for secret in (
        DB_PASSWORD,
        USERS_PASSWORD,
        AGENT_PASSWORD,
        TOKEN,
        TOKEN.split(":")[1],
        KEY,
        "webhook-secret-never-logged",
    ):
        assert secret not in output, secret


def _run_gateway(database_url: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(free_port())]
    return subprocess.run(
        argv, env=_env(database_url), cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.e2e
def test_a_refused_database_login_leaves_no_password_in_the_output() -> None:
    with FakePostgres() as fake:
        result = _run_gateway(f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{fake.port}/gw")
        assert fake.passwords_seen == [DB_PASSWORD]  # the driver did send it...
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "28P01" in output or "password" in output.lower()  # ...and the failure is reported
    _assert_clean(output)


@pytest.mark.e2e
def test_an_unreachable_database_leaves_no_password_in_the_output() -> None:
    result = _run_gateway(f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/gw")
    assert result.returncode != 0
    _assert_clean(result.stdout + result.stderr)


def test_check_config_masks_every_secret() -> None:
    argv = [sys.executable, "-m", "app.cli", "check-config"]
    url = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:5432/gw"
    result = subprocess.run(
        argv, env=_env(url), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "USER_SERVICE_BASE='http://gw:***@127.0.0.1:9'" in result.stdout
    _assert_clean(result.stdout + result.stderr)
