"""A configuration error names the variable and never shows a secret value (issue 14).

pydantic's own message quotes the input (`input_value='mysql://user:password@...'`), so every bad
value below carries a password, and the checks look for any piece of it in what the operator
sees: the `ConfigError` message in process, stderr and the exit code of the real entry points.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.servers import ROOT, free_port
from users_service import config

PASSWORD = "S3cretPw-4f9a"
API_KEY = "ApiKey-7d2c-secret"

# (DATABASE_URL, the secret pieces that must not appear). An unencoded '@' splits a password in
# two, and each half is a secret of its own.
BAD_DATABASE_URLS = [
    (f"mysql://user:{PASSWORD}@db.example/users", [PASSWORD]),
    (f"postgress://user:{PASSWORD}@db.example/users", [PASSWORD]),
    (f"postgresql://user:{PASSWORD}@db.example:port/users", [PASSWORD]),
    (f"postgresql://user:{PASSWORD}@db.example:99999/users", [PASSWORD]),
    ("postgresql://user:Hunter2x@Hunter3y@db.example/users", ["Hunter2x", "Hunter3y"]),
    (f"postgresql://user:{PASSWORD}@db.example/users?sslmode=sometimes", [PASSWORD]),
    (f"sqlite://user:{PASSWORD}@db.example/users.db", [PASSWORD]),
    (f"{PASSWORD}", [PASSWORD]),  # a password pasted into the wrong variable
    (f"{PASSWORD}://db.example/users", [PASSWORD]),
    (f"postgresql://user:{PASSWORD}@[::1/users", [PASSWORD]),
]
URL_IDS = [
    "mysql",
    "postgress",
    "port-not-a-number",
    "port-out-of-range",
    "unencoded-at",
    "bad-sslmode",
    "sqlite-with-host",
    "bare-password",
    "password-as-scheme",
    "broken-ipv6",
]


def _clean_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name in ("DATABASE_URL", "API_KEY", "LOG_LEVEL", "MAX_BODY_BYTES", "MAX_METADATA_BYTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(("url", "secrets"), BAD_DATABASE_URLS, ids=URL_IDS)
def test_bad_database_url_names_the_variable_not_the_value(
    url: str, secrets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch, DATABASE_URL=url, API_KEY=API_KEY)
    with pytest.raises(config.ConfigError) as info:
        config.load_settings()
    message = str(info.value)
    assert "DATABASE_URL" in message
    for secret in [*secrets, API_KEY]:
        assert secret not in message, message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOG_LEVEL", PASSWORD), ("MAX_BODY_BYTES", PASSWORD), ("MAX_METADATA_BYTES", PASSWORD)],
)
def test_other_bad_values_are_not_echoed(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(
        monkeypatch,
        DATABASE_URL=f"postgresql://user:{PASSWORD}@db.example/users",
        API_KEY=API_KEY,
        **{name: value},
    )
    with pytest.raises(config.ConfigError) as info:
        config.load_settings()
    message = str(info.value)
    assert name in message
    assert PASSWORD not in message and API_KEY not in message, message


def test_good_urls_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(
        monkeypatch,
        DATABASE_URL="postgres://user:p%40ss@db.example:6543/users?sslmode=require",
        API_KEY=API_KEY,
    )
    settings = config.load_settings()
    assert settings.async_url.password == "p@ss"
    assert settings.async_url.port == 6543


ENTRY_POINTS = {
    "uvicorn": ["-m", "uvicorn", "users_service.main:app", "--host", "127.0.0.1", "--port"],
    "migrate": ["-m", "users_service", "migrate"],
    "current": ["-m", "users_service", "current"],
}


MYSQL = {"DATABASE_URL": f"mysql://user:{PASSWORD}@db.example/users"}
POSTGRESS = {"DATABASE_URL": f"postgress://user:{PASSWORD}@db.example/users"}
LOG_LEVEL = {"DATABASE_URL": f"postgresql://u:{PASSWORD}@db/x", "LOG_LEVEL": "chatty"}


@pytest.mark.parametrize(
    ("entry", "env"),
    [
        ("uvicorn", MYSQL),
        ("uvicorn", POSTGRESS),
        ("uvicorn", LOG_LEVEL),
        ("migrate", MYSQL),
        ("current", POSTGRESS),
    ],
    ids=["uvicorn-mysql", "uvicorn-postgress", "uvicorn-log-level", "migrate", "current"],
)
def test_entry_points_exit_2_with_a_secret_free_message(entry: str, env: dict[str, str]) -> None:
    argv = [sys.executable, *ENTRY_POINTS[entry]]
    if entry == "uvicorn":
        argv.append(str(free_port()))
    full_env = {**os.environ, "API_KEY": API_KEY, "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.run(argv, cwd=ROOT, env=full_env, capture_output=True, timeout=60)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, out
    bad = "LOG_LEVEL" if "LOG_LEVEL" in env else "DATABASE_URL"
    assert bad in proc.stderr.decode(), out
    assert "invalid configuration" in out
    assert PASSWORD not in out and API_KEY not in out, out
    assert "Traceback" not in out, out
