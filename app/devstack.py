"""The local stack: Telegram sandbox, User Service, Agent Service and gateway, wired together.

One module knows how the four processes are started and connected to each other: `messaging
dev` runs it for a person at a keyboard, the end-to-end tests run it for the suite
(`tests/e2e/stack.py` adds the helpers tests need on top). Every process listens on 127.0.0.1;
each is a uvicorn app started with this interpreter, its output in a log file, and is ready
when its health path answers.

Nothing here imports the other services: they are started by module name, as a deployment
would start them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from sandbox.config import DEFAULT_TOKEN as DEV_TOKEN  # the token the sandbox accepts

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ("demo", "openai", "local", "none")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_or_free(preferred: int) -> int:
    """`preferred` when it is free, else any free port (0: any)."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", preferred))
            except OSError:
                pass
            else:
                return preferred
    return free_port()


class Service:
    """One process of the stack: a uvicorn app on 127.0.0.1:`port`, its output in a log file.

    `app` is an import string (``"users_service.main:app"``); `env` is merged over the current
    environment; `ready_path` is polled until it answers 2xx. `start` / `stop` (SIGTERM, then
    SIGKILL) / `kill` (SIGKILL: a crash, no shutdown code runs).
    """

    def __init__(
        self,
        app: str,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        ready_path: str = "/health",
        log_dir: Path | None = None,
        name: str | None = None,
        extra_args: tuple[str, ...] = (),
        argv: list[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.env = dict(env or {})
        self.port = port or free_port()
        self.ready_path = ready_path
        self.name = name or app.split(":")[0].replace(".", "_")
        self.log_dir = log_dir or Path(os.environ.get("TEST_LOG_DIR") or tempfile.gettempdir())
        self.extra_args = extra_args
        self.argv = argv
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.log_dir / f"{self.name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return self.argv or [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            *self.extra_args,
        ]

    def start(self) -> Service:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 (our interpreter, our modules)
            self.command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                    + self.output()
                )
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {self.ready_timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it does not exit in `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """kill -9: no shutdown code runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _private_file(path: Path, content: str) -> str:
    """Create `path` readable by its owner only (0600), unless it exists; return its content."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
    return path.read_text().strip()


@dataclass
class LocalStack:
    """How the four services of the local stack are configured and connected.

    `agent`: "demo" (offline), "openai" (the `OPENAI_*` variables of the environment), "local"
    (a small model on this CPU; needs the `local` extra), or "none" (the gateway's built-in
    echo). `agent_url` points the gateway at an agent of your own instead (no agent process).
    The `*_env` mappings add or override variables of one service.
    """

    state: Path
    agent: str = "demo"
    agent_url: str | None = None
    sandbox_port: int = 0
    gateway_port: int = 0
    users_port: int = 0
    agent_port: int = 0
    log_level: str = "INFO"
    log_dir: Path | None = None
    users_database: str | None = None
    sandbox_env: dict[str, str] = field(default_factory=dict)
    users_env: dict[str, str] = field(default_factory=dict)
    agent_env: dict[str, str] = field(default_factory=dict)
    gateway_env: dict[str, str] = field(default_factory=dict)
    users_key: str = "dev-users-key"
    agent_key: str = "dev-agent-key"
    admin_token: str = "dev-admin-token"  # noqa: S105 - a local dev stack's well-known token
    webhook_secret: str = ""

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"agent must be one of {', '.join(AGENTS)}")
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs = self.log_dir or self.state / "logs"
        self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.webhook_secret:
            self.webhook_secret = _private_file(
                self.state / "webhook-secret", secrets.token_urlsafe(24)
            )
        self.sandbox_port = port_or_free(self.sandbox_port)
        self.gateway_port = port_or_free(self.gateway_port)
        self.users_port = port_or_free(self.users_port)
        self.agent_port = port_or_free(self.agent_port)

    # --- the processes ----------------------------------------------------------------------

    def sandbox(self) -> Service:
        env = {
            "SANDBOX_BOT_TOKEN": DEV_TOKEN,
            "SANDBOX_STATE_DIR": str(self.state / "sandbox"),
            **self.sandbox_env,
        }
        return Service("sandbox.main:app", env, port=self.sandbox_port, log_dir=self.logs)

    def users(self) -> Service:
        database = self.users_database or f"sqlite:///{(self.state / 'users.db').resolve()}"
        env = {
            "DATABASE_URL": database,
            "API_KEY": self.users_key,
            "LOG_LEVEL": self.log_level,
            **self.users_env,
        }
        return Service("users_service.main:app", env, port=self.users_port, log_dir=self.logs)

    def agent_service(self) -> Service | None:
        """The Agent Service process, or None when the gateway needs none (or has its own)."""
        if self.agent == "none" or self.agent_url:
            return None
        env = {
            "AGENT_BACKEND": self.agent,
            "AGENT_SERVICE_API_KEY": self.agent_key,
            "LOG_LEVEL": self.log_level,
            **self.agent_env,
        }
        service = Service(
            "agent_service.main:app",
            env,
            port=self.agent_port,
            log_dir=self.logs,
            name=f"agent_service_{self.agent}",
        )
        if self.agent == "local":
            service.ready_timeout = 180.0  # the model loads before the service is ready
        return service

    @property
    def agent_base(self) -> str:
        if self.agent_url:
            return self.agent_url
        return "" if self.agent == "none" else f"http://127.0.0.1:{self.agent_port}"

    def gateway(
        self, *, port: int | None = None, name: str = "gateway", **overrides: str
    ) -> Service:
        """The gateway (sandbox as Telegram, webhook mode); `overrides` on top of `gateway_env`."""
        port = port or self.gateway_port
        env = {
            "BOT_TOKEN": DEV_TOKEN,
            "TELEGRAM_API_BASE": f"http://127.0.0.1:{self.sandbox_port}",
            "USER_SERVICE_BASE": f"http://127.0.0.1:{self.users_port}",
            "USER_SERVICE_API_KEY": self.users_key,
            "AGENT_SERVICE_BASE": self.agent_base,
            "AGENT_SERVICE_API_KEY": self.agent_key
            if self.agent_base and not self.agent_url
            else "",
            "WEBHOOK_SECRET_TOKEN": self.webhook_secret,
            "WEBHOOK_URL": f"http://127.0.0.1:{port}/webhook/telegram",
            "DATABASE_URL": f"sqlite:///{(self.state / (name + '.db')).resolve()}",
            "ADMIN_TOKEN": self.admin_token,
            "LOG_LEVEL": self.log_level,
            **self.gateway_env,
            **overrides,
        }
        return Service(
            "app.main:app", env, port=port, ready_path="/ready", log_dir=self.logs, name=name
        )

    def webhook_url(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.gateway_port}/webhook/telegram"


def wait_webhook(sandbox_url: str, url: str, timeout: float = 30) -> None:
    """The gateway registers its webhook at start; wait until the sandbox has `url`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = httpx.get(f"{sandbox_url}/bot{DEV_TOKEN}/getWebhookInfo", timeout=2).json()
            if info.get("result", {}).get("url") == url:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway did not register its webhook with the sandbox")
