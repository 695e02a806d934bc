"""`messaging serve --role`: an ingest-only process and a worker-only process, as real processes.

Both run the real command line on one database (a SQLite file here; PostgreSQL in production),
with the Telegram sandbox and the reference User Service. The ingest process registers the
webhook and stores what the sandbox delivers, and nothing more: its rows stay unclaimed and the
chat gets no reply. The worker, started afterwards, answers each message once and refuses
webhook calls with 503 (Telegram would deliver them to an ingesting process).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from app import cli
from app.devstack import wait_webhook
from sandbox.client import SandboxControl
from tests.support.sandbox import RELAXED_LIMITS, SANDBOX_TOKEN, sandbox_process
from tests.support.servers import ServerProcess, free_port, wait_until
from tests.support.users_service import users_service_process

pytestmark = pytest.mark.e2e

SECRET = "roles-secret_1"
MESSAGING = str(Path(sys.executable).parent / "messaging")


def _gateway(role: str, env: dict[str, str], name: str) -> ServerProcess:
    port = free_port()
    argv = [MESSAGING, "serve", "--host", "127.0.0.1", "--port", str(port), "--role", role]
    return ServerProcess("app.main:app", env, port=port, ready_path="/ready", name=name, argv=argv)


def _inbox(db: Path) -> list[tuple[int, str, int, str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT update_id, state, attempts, lease_owner FROM inbox ORDER BY seq"
        ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[SandboxControl, dict[str, str], Path]]:
    with (
        sandbox_process(**RELAXED_LIMITS) as sandbox,
        users_service_process(f"sqlite:///{tmp_path / 'users.db'}") as users,
        SandboxControl(sandbox.url) as ctl,
    ):
        db = tmp_path / "gw.db"
        env = {
            "BOT_TOKEN": SANDBOX_TOKEN,
            "TELEGRAM_API_BASE": sandbox.url,
            "USER_SERVICE_BASE": users.url,
            "USER_SERVICE_API_KEY": "",
            "AGENT_SERVICE_BASE": "",
            "WEBHOOK_SECRET_TOKEN": SECRET,
            "DATABASE_URL": f"sqlite:///{db}",
            "POLL_INTERVAL": "0.2",
            "TURN_MODE": "queue",  # one reply per message, as counted below
        }
        yield ctl, env, db


def test_ingest_stores_and_only_a_worker_answers(
    stack: tuple[SandboxControl, dict[str, str], Path],
) -> None:
    ctl, env, db = stack
    user = int(ctl.create_user("Role")["id"])
    ingest = _gateway("ingest", env, "gateway-ingest")
    ingest.env["WEBHOOK_URL"] = f"{ingest.url}/webhook/telegram"
    with ingest:
        wait_webhook(ctl.base_url, ingest.env["WEBHOOK_URL"])
        for n in (1, 2, 3):
            ctl.send_text(user, f"hello {n}")
        wait_until(lambda: len(_inbox(db)) == 3, timeout=20, what="3 updates stored")
        # Stored, never claimed, never answered: the ingest process works nothing.
        assert all(
            state == "pending" and attempts == 0 and owner is None
            for _, state, attempts, owner in _inbox(db)
        )
        assert ctl.bot_messages(user) == []

        with _gateway("worker", env, "gateway-worker") as worker:
            wait_until(
                lambda: [r[1] for r in _inbox(db)] == ["done"] * 3,
                timeout=30,
                what="the worker to process the 3 updates",
            )
            wait_until(lambda: len(ctl.bot_messages(user)) == 3, timeout=20, what="3 replies")
            replies = [m["text"] for m in ctl.bot_messages(user)]
            assert [any(f"hello {n}" in r for r in replies) for n in (1, 2, 3)] == [True] * 3
            refused = httpx.post(
                f"{worker.url}/webhook/telegram",
                json={"update_id": 1, "message": {}},
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                timeout=5,
            )
            assert refused.status_code == 503
            assert "role worker" in refused.json()["description"]
            assert len(_inbox(db)) == 3  # nothing stored by the worker


def test_serve_rejects_an_unknown_role() -> None:
    result = CliRunner().invoke(cli.app, ["serve", "--role", "both"])
    assert result.exit_code == 2
    assert "must be all, ingest or worker" in result.output
