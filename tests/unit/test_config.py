"""Configuration: defaults, validation, and failing at start without leaking secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
BASE = {"BOT_TOKEN": "123456:AAAA-bbbb_cccc", "USER_SERVICE_BASE": "http://users:8000/"}


def make(**values: Any) -> Settings:
    return load_settings(_env_file=None, **{**BASE, **values})


def test_defaults() -> None:
    s = make()
    assert s.USER_SERVICE_BASE == "http://users:8000"
    assert s.TELEGRAM_API_BASE == "https://api.telegram.org"
    assert s.DATABASE_URL.startswith("sqlite:///")
    assert s.REQUEST_TIMEOUT == 10 and s.LOG_LEVEL == "INFO"
    assert s.agent_timeout > s.REQUEST_TIMEOUT
    assert s.AGENT_SERVICE_BASE is None and s.WEBHOOK_SECRET_TOKEN is None


def test_agent_timeout_follows_request_timeout_unless_set() -> None:
    assert make(REQUEST_TIMEOUT=20).agent_timeout == 60
    assert make(AGENT_TIMEOUT=5).agent_timeout == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("BOT_TOKEN", "not-a-token"),
        ("USER_SERVICE_BASE", "users:8000"),
        ("WEBHOOK_SECRET_TOKEN", "has space"),
        ("WEBHOOK_SECRET_TOKEN", "x" * 257),
        ("WEBHOOK_SECRET_TOKEN", "ünïcode"),
        ("DATABASE_URL", "mysql://x/y"),
        ("LOG_LEVEL", "LOUD"),
        ("REQUEST_TIMEOUT", "-1"),
        ("INBOX_RETENTION_HOURS", "1"),
        ("WORKER_CONCURRENCY", "0"),
        ("TURN_MODE", "batch"),
        ("TURN_DEBOUNCE", "-1"),
        ("TURN_MAX_MESSAGES", "0"),
        ("ALBUM_GRACE", "31"),
        ("GROUP_REPLY", "never"),
        ("GROUP_TRIGGER_WORDS", "ok," + "w" * 65),
        ("BUTTON_FEEDBACK", "blink"),
        ("FILES_BASE_URL", "gateway:8000"),
        ("FILES_SIGNING_KEY", "shortkey"),
        ("FILES_URL_TTL", "5"),
    ],
)
def test_invalid_values_name_the_variable(field: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(**{field: value})
    assert field in str(info.value)
    if len(value) >= 4:  # short numbers may appear in the rule itself ("greater than 0")
        assert value not in str(info.value)


def test_valid_secret_token_and_blank_optionals() -> None:
    s = make(WEBHOOK_SECRET_TOKEN="A-z_09" * 10, AGENT_SERVICE_BASE="", ADMIN_TOKEN=" ")
    assert s.WEBHOOK_SECRET_TOKEN == "A-z_09" * 10
    assert s.AGENT_SERVICE_BASE is None and s.ADMIN_TOKEN is None


def test_turn_group_button_and_file_settings() -> None:
    s = make()
    assert (s.TURN_MODE, s.TURN_DEBOUNCE, s.ALBUM_GRACE) == ("collect", 1.0, 1.0)
    assert (s.GROUP_REPLY, s.BUTTON_FEEDBACK, s.trigger_words) == ("addressed", "mark", [])
    assert s.files_base_url == "" and s.FILES_MAX_BYTES == 20 * 2**20
    s = make(
        WEBHOOK_URL="https://bot.example.com/webhook/telegram",
        GROUP_TRIGGER_WORDS=" Jarvis, hey bot ,",
    )
    assert s.files_base_url == "https://bot.example.com"
    assert s.trigger_words == ["Jarvis", "hey bot"]
    assert make(FILES_BASE_URL="http://gw:8000/", WEBHOOK_URL="https://x/y").files_base_url == (
        "http://gw:8000"
    )
    key = make(FILES_SIGNING_KEY="a-long-signing-key-1234")
    assert "a-long-signing-key-1234" not in repr(key)
    assert "a-long-signing-key-1234" in key.secret_values()


def test_repr_masks_secrets() -> None:
    s = make(WEBHOOK_SECRET_TOKEN="supersecretvalue", ADMIN_TOKEN="adminsecretvalue")
    text = repr(s)
    for secret in ("123456:AAAA-bbbb_cccc", "supersecretvalue", "adminsecretvalue"):
        assert secret not in text


def run_app(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    return subprocess.run(
        [sys.executable, "-c", "import app.main as m; m.app"],
        cwd=ROOT / "tests",  # no .env file here
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_process_exits_nonzero_naming_missing_variables() -> None:
    result = run_app({})
    assert result.returncode == 2
    assert "BOT_TOKEN" in result.stderr and "USER_SERVICE_BASE" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_secret_value_is_never_printed() -> None:
    token = "999999:this-is-the-secret-bot-token"
    secret = "bad secret with spaces"
    result = run_app(
        {"BOT_TOKEN": token, "USER_SERVICE_BASE": "nope", "WEBHOOK_SECRET_TOKEN": secret}
    )
    assert result.returncode == 2
    assert "USER_SERVICE_BASE" in result.stderr and "WEBHOOK_SECRET_TOKEN" in result.stderr
    assert token not in result.stderr and secret not in result.stderr


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://bot.example.com/webhook/telegram", "https"),
        ("https://bot.example.com/web hook", "spaces"),
        ("https://bot example.com/webhook", "spaces"),
        ("https://bot.example.com:99999/webhook", "port"),
        ("https://bot.example.com:8080/webhook", "443, 80, 88 or 8443"),
        ("https://bot.example.com:port/webhook", "not a valid URL"),
        ("ftp://bot.example.com/webhook", "https"),
        ("https:///webhook", "https"),
    ],
)
def test_webhook_url_is_checked_like_telegram_does(url: str, why: str) -> None:
    """Telegram refuses these at `setWebhook` (retried forever at start): refuse them here."""
    with pytest.raises(ConfigError) as info:
        make(WEBHOOK_URL=url)
    assert "WEBHOOK_URL" in str(info.value) and why in str(info.value), str(info.value)


@pytest.mark.parametrize("port", ["", ":443", ":80", ":88", ":8443"])
def test_webhook_url_on_telegrams_ports_is_accepted(port: str) -> None:
    url = f"https://bot.example.com{port}/webhook/telegram"
    assert url == make(WEBHOOK_URL=url).WEBHOOK_URL


def test_webhook_url_rules_of_another_bot_api_server() -> None:
    """A local Bot API server (or the sandbox) takes plain http on any port; a broken URL is
    still refused."""
    other = {"TELEGRAM_API_BASE": "http://127.0.0.1:8081"}
    assert make(WEBHOOK_URL="http://127.0.0.1:8000/webhook/telegram", **other).WEBHOOK_URL
    for bad in ("http://127.0.0.1:99999/hook", "http://127.0.0.1/a b", "ftp://127.0.0.1/hook"):
        with pytest.raises(ConfigError, match="WEBHOOK_URL"):
            make(WEBHOOK_URL=bad, **other)


PW = "Pw-s3cret-4f9a"
URL_VALUES_WITH_A_PASSWORD = [
    ("DATABASE_URL", f"mysql://u:{PW}@db.example/gw"),
    ("DATABASE_URL", f"postgress://u:{PW}@db.example/gw"),
    ("DATABASE_URL", f"{PW}://db.example/gw"),
    ("DATABASE_URL", PW),
    ("USER_SERVICE_BASE", f"ftp://u:{PW}@users.example"),
    ("USER_SERVICE_BASE", f"u:{PW}@users.example"),
    ("USER_SERVICE_BASE", f"http://u:{PW}@users.example:99999"),
    ("USER_SERVICE_BASE", f"http://u:{PW}@[::1"),
    ("USER_SERVICE_BASE", f"http://u:{PW}@users.example:port"),
    ("AGENT_SERVICE_BASE", f"ftp://u:{PW}@agent.example"),
    ("AGENT_SERVICE_BASE", f"http://u:{PW}@agent.example:0"),
    ("TELEGRAM_API_BASE", f"tg://u:{PW}@api.example"),
    ("WEBHOOK_URL", f"http://u:{PW}@bot.example/hook"),
    ("WEBHOOK_URL", f"https://u:{PW}@bot.example:99999/hook"),
    ("WEBHOOK_URL", f"https://u:{PW}@bot.example/a hook"),
    ("FILES_BASE_URL", f"ftp://u:{PW}@gw.example"),
]


@pytest.mark.parametrize(("field", "value"), URL_VALUES_WITH_A_PASSWORD)
def test_no_configuration_error_shows_a_password(field: str, value: str) -> None:
    """pydantic's own message quotes the input (`input_value='mysql://u:pw@...'`): never
    ours, for any URL-typed variable (issue 14)."""
    with pytest.raises(ConfigError) as info:
        make(**{field: value})
    message = str(info.value)
    assert field in message
    assert PW not in message and "input" not in message, message
    assert info.value.__cause__ is None


def test_a_password_with_an_unencoded_at_is_masked_whole() -> None:
    """`http://gw:Hunter2x@Hunter3y@host`: URL parsers read the password up to the last `@`;
    `messaging check-config` (repr) used to show its second half."""
    s = make(
        USER_SERVICE_BASE="http://gw:Hunter2x@Hunter3y@127.0.0.1:9",
        AGENT_SERVICE_BASE="http://gw:Agent2x@Agent3y@127.0.0.1:9",
    )
    shown = repr(s)
    for piece in ("Hunter2x", "Hunter3y", "Agent2x", "Agent3y"):
        assert piece not in shown, shown
    assert "USER_SERVICE_BASE='http://gw:***@127.0.0.1:9'" in shown
    assert {"Hunter2x@Hunter3y", "Agent2x@Agent3y"} <= set(s.secret_values())


def test_entry_point_error_with_passwords_in_urls_is_secret_free() -> None:
    result = run_app(
        {
            "BOT_TOKEN": "999999:this-is-the-secret-bot-token",
            "USER_SERVICE_BASE": f"http://gw:{PW}@users.example:99999",
            "DATABASE_URL": f"postgress://u:{PW}@db.example/gw",
            "WEBHOOK_URL": f"http://u:{PW}@bot.example/hook",
        }
    )
    assert result.returncode == 2
    for name in ("USER_SERVICE_BASE", "DATABASE_URL"):
        assert name in result.stderr
    assert PW not in result.stderr and PW not in result.stdout
    assert "Traceback" not in result.stderr


def test_every_setting_is_in_the_readme_table() -> None:
    """The README's configuration table is the operator's reference: a setting missing there
    is a setting nobody can find."""
    readme = (ROOT / "README.md").read_text()
    first_cells = [line.split("|")[1] for line in readme.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z0-9_]+)`", cell)}
    missing = sorted(set(Settings.model_fields) - documented)
    assert missing == [], f"settings missing from README.md's configuration table: {missing}"


def test_database_pool_follows_worker_concurrency_unless_set() -> None:
    assert make(WORKER_CONCURRENCY="16").db_pool_size == 20
    assert make(WORKER_CONCURRENCY="64").db_pool_size == 68
    assert make(WORKER_CONCURRENCY="64", DB_POOL_SIZE="30").db_pool_size == 30
    assert make(GATEWAY_ROLE="ingest").db_pool_size == 4  # no worker slots
    assert make(GATEWAY_ROLE="ingest", DB_POOL_SIZE="8").db_pool_size == 8
    assert make().DB_MAX_OVERFLOW == 0
