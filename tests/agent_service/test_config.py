"""Settings fail fast: exit 2, the variable named, a secret never echoed; JSON log lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent_service.config import ConfigError, Settings, load_settings, redact_url
from tests.support.agent_service import agent_service_process
from tests.support.servers import ROOT

PASSWORD = "hunter2-Pa55word"
SECRET_KEY = "sk-live-abcdef0123456789SECRET"
URL_WITH_PASSWORD = f"http://alice:{PASSWORD}@127.0.0.1:9/v1"


def _start(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """Start the service the way a deployment does, with only `env` configured."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, *argv],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


UVICORN = ("-m", "uvicorn", "agent_service.main:app", "--port", "1")
MODULE = ("-m", "agent_service", "--port", "1")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AGENT_BACKEND": "gpt", "OPENAI_API_KEY": SECRET_KEY}, "AGENT_BACKEND"),
        (
            {
                "AGENT_TEMPERATURE": "hot",
                "OPENAI_API_KEY": SECRET_KEY,
                "OPENAI_BASE_URL": URL_WITH_PASSWORD,
            },
            "AGENT_TEMPERATURE",
        ),
        (
            {"OPENAI_BASE_URL": f"ftp://alice:{PASSWORD}@host/v1", "OPENAI_API_KEY": SECRET_KEY},
            "OPENAI_BASE_URL",
        ),
        ({"OPENAI_BASE_URL": f"not a url {PASSWORD}"}, "OPENAI_BASE_URL"),
        ({"AGENT_BACKEND": "openai"}, "OPENAI_API_KEY"),  # OpenAI's own API needs a key
        (
            {"AGENT_EXTRA_BODY": f'{{"broken": "{PASSWORD}"', "OPENAI_API_KEY": SECRET_KEY},
            "AGENT_EXTRA_BODY",
        ),
        (
            {"AGENT_UPSTREAM_TIMEOUT": "0", "AGENT_SERVICE_API_KEY": SECRET_KEY},
            "AGENT_UPSTREAM_TIMEOUT",
        ),
        ({"LOG_LEVEL": "LOUD", "AGENT_SERVICE_API_KEY": SECRET_KEY}, "LOG_LEVEL"),
        (
            {"AGENT_BACKEND": "local", "AGENT_LOCAL_MODEL_PATH": f"/nonexistent/{PASSWORD}.gguf"},
            "AGENT_",
        ),
    ],
)
@pytest.mark.parametrize("argv", [UVICORN, MODULE], ids=["uvicorn", "module"])
def test_bad_settings_exit_2_naming_the_variable_never_a_secret(
    env: dict[str, str], variable: str, argv: tuple[str, ...]
) -> None:
    result = _start(env, *argv)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert variable in result.stderr
    assert "Traceback" not in output
    for secret in (PASSWORD, SECRET_KEY):
        assert secret not in output


def test_openai_without_key_is_fine_for_a_server_of_ones_own() -> None:
    s = Settings(AGENT_BACKEND="openai", OPENAI_BASE_URL="http://127.0.0.1:11434/v1")
    assert s.OPENAI_API_KEY is None


def test_empty_values_mean_unset() -> None:
    s = Settings(
        AGENT_SERVICE_API_KEY="", OPENAI_API_KEY="", AGENT_TEMPERATURE="", AGENT_EXTRA_BODY=""
    )
    assert s.AGENT_SERVICE_API_KEY is None and s.OPENAI_API_KEY is None
    assert s.AGENT_TEMPERATURE is None and s.AGENT_EXTRA_BODY == {}


def test_extra_body_is_a_json_object() -> None:
    assert Settings(AGENT_EXTRA_BODY='{"max_completion_tokens": 9}').AGENT_EXTRA_BODY == {
        "max_completion_tokens": 9
    }
    with pytest.raises(ConfigError, match="AGENT_EXTRA_BODY: must be a JSON object"):
        load_settings(AGENT_EXTRA_BODY="[1, 2]")


def test_repr_and_secrets_list_hide_keys_and_the_url_password() -> None:
    s = Settings(
        AGENT_BACKEND="openai",
        OPENAI_BASE_URL=URL_WITH_PASSWORD,
        OPENAI_API_KEY=SECRET_KEY,
        AGENT_SERVICE_API_KEY="agent-key-123456",
    )
    text = repr(s) + str(s)
    assert PASSWORD not in text and SECRET_KEY not in text and "agent-key-123456" not in text
    assert {PASSWORD, SECRET_KEY, "agent-key-123456"} <= set(s.secrets())
    assert PASSWORD not in redact_url(URL_WITH_PASSWORD)
    assert redact_url(URL_WITH_PASSWORD).endswith("@127.0.0.1:9/v1")


def test_logs_are_json_and_never_show_a_secret(tmp_path: Path) -> None:
    """A running service with a password in its upstream URL and keys on both sides: every
    line it writes (start-up, a failed turn whose reason quotes the upstream) is JSON, and
    none contains a secret."""
    server = agent_service_process(
        AGENT_BACKEND="openai",
        OPENAI_BASE_URL=URL_WITH_PASSWORD,  # nothing listens on port 9: the turn fails
        OPENAI_API_KEY=SECRET_KEY,
        AGENT_SERVICE_API_KEY="agent-key-123456",
        AGENT_UPSTREAM_TIMEOUT="2",
        LOG_LEVEL="DEBUG",
    )
    server.log_dir = tmp_path
    server.log_path = tmp_path / "agent.log"
    with server:
        response = httpx.post(
            server.url + "/api/respond",
            json={"text": "hi"},
            headers={"X-API-Key": "agent-key-123456"},
            timeout=10,
        )
        assert response.status_code == 503
        assert PASSWORD not in response.text and SECRET_KEY not in response.text
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert any(r["message"] == "agent service ready" for r in records)
    assert any(r["message"] == "turn failed" and r["status"] == 503 for r in records)
    for line in lines:
        assert PASSWORD not in line and SECRET_KEY not in line and "agent-key-123456" not in line
    ready = next(r for r in records if r["message"] == "agent service ready")
    assert ready["base_url"] == "http://***@127.0.0.1:9/v1" and ready["api_key"] == "set"
