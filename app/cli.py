"""`messaging`: the project's command-line tool (installed into .venv as a console script).

    messaging dev            the whole system on this machine: Telegram sandbox + User Service +
                             gateway, wired together; prints the URL of the web chat page
    messaging serve          the gateway alone (configuration from the environment / .env)
    messaging set-webhook    point the bot at a public URL (uses BOT_TOKEN, WEBHOOK_SECRET_TOKEN)
    messaging delete-webhook
    messaging check-config   validate the environment without starting anything

`dev` needs no configuration and no network: every process listens on 127.0.0.1, state lives
in `./var/dev/` (delete it to start over), and Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from sandbox.config import DEFAULT_TOKEN as DEV_TOKEN  # the sandbox accepts this token

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(preferred: int) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Child:
    """One service of the local stack, its output in a log file."""

    def __init__(self, name: str, module: str, port: int, env: dict[str, str], logs: Path) -> None:
        self.name, self.port = name, port
        self.log_path = logs / f"{name}.log"
        log = self.log_path.open("ab")
        argv = [sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--no-access-log"]
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and modules)
            argv,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to us; we stop the children in order
        )
        log.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} exited during start-up:\n{tail}")
            try:
                if httpx.get(self.url + path, timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready in {timeout}s (see {self.log_path})")

    def stop(self, timeout: float = 25) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port of the web chat page (sandbox)")] = 8080,
    gateway_port: Annotated[int, typer.Option(help="Port of the gateway")] = 8000,
    users_port: Annotated[int, typer.Option(help="Port of the User Service")] = 8001,
    state: Annotated[Path, typer.Option(help="Folder for databases and logs")] = Path("var/dev"),
) -> None:
    """Run sandbox + User Service + gateway locally and print the chat page's URL."""
    state.mkdir(parents=True, exist_ok=True)
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    secret_file = state / "webhook-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(24))
    webhook_secret = secret_file.read_text().strip()
    users_key = "dev-users-key"

    sandbox_port = _pick_port(port)
    gw_port = _pick_port(gateway_port)
    us_port = _pick_port(users_port)
    children: list[Child] = []

    def shutdown(*_: object) -> None:
        typer.echo("\nstopping...")
        for child in reversed(children):
            child.stop()
        typer.echo("stopped.")

    try:
        sandbox = Child(
            "sandbox",
            "sandbox.main:app",
            sandbox_port,
            {"SANDBOX_BOT_TOKEN": DEV_TOKEN},
            logs,
        )
        children.append(sandbox)
        users = Child(
            "users_service",
            "users_service.main:app",
            us_port,
            {"DATABASE_URL": f"sqlite:///{(state / 'users.db').resolve()}", "API_KEY": users_key},
            logs,
        )
        children.append(users)
        sandbox.wait_ready("/health")
        users.wait_ready("/health")
        gateway = Child(
            "gateway",
            "app.main:app",
            gw_port,
            {
                "BOT_TOKEN": DEV_TOKEN,
                "TELEGRAM_API_BASE": sandbox.url,
                "USER_SERVICE_BASE": users.url,
                "USER_SERVICE_API_KEY": users_key,
                "WEBHOOK_SECRET_TOKEN": webhook_secret,
                "WEBHOOK_URL": f"http://127.0.0.1:{gw_port}/webhook/telegram",
                "DATABASE_URL": f"sqlite:///{(state / 'gateway.db').resolve()}",
                "ADMIN_TOKEN": "dev-admin-token",
                "AGENT_SERVICE_BASE": os.environ.get("AGENT_SERVICE_BASE", ""),
                "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            },
            logs,
        )
        children.append(gateway)
        gateway.wait_ready("/ready")
        _wait_webhook(sandbox.url)
    except (RuntimeError, KeyboardInterrupt) as exc:
        if isinstance(exc, RuntimeError):
            typer.echo(f"error: {exc}", err=True)
        shutdown()
        raise typer.Exit(1) from None

    agent = os.environ.get("AGENT_SERVICE_BASE") or "built-in fallback (echo + /start, /help)"
    typer.echo(
        "\n".join(
            [
                "",
                "  Messaging gateway: local stack is running",
                "",
                f"  Chat with the bot:  {sandbox.url}/",
                f"  Gateway:            {gateway.url}  (admin token: dev-admin-token)",
                f"  User Service:       {users.url}  (X-API-Key: {users_key})",
                f"  Agent:              {agent}",
                f"  State and logs:     {state.resolve()}",
                "",
                "  Press Ctrl-C to stop.",
                "",
            ]
        )
    )
    stop_requested = False

    def on_signal(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop_requested:
            for child in children:
                if child.proc.poll() is not None:
                    typer.echo(f"{child.name} exited unexpectedly; see {child.log_path}", err=True)
                    stop_requested = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    shutdown()


def _wait_webhook(sandbox_url: str, timeout: float = 30) -> None:
    """The gateway registers its webhook at start; wait until the sandbox has it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = httpx.get(f"{sandbox_url}/bot{DEV_TOKEN}/getWebhookInfo", timeout=2).json()
            if info.get("result", {}).get("url"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway did not register its webhook with the sandbox")


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run the gateway (configuration from the environment and .env)."""
    import uvicorn

    from app.main import create_app

    uvicorn.run(create_app(), host=host, port=port, access_log=False, log_config=None)


@app.command("check-config")
def check_config() -> None:
    """Validate the configuration and print it with secrets masked."""
    from app.config import load_settings_or_exit

    settings = load_settings_or_exit()
    typer.echo(repr(settings))


def _telegram_call(method: str, **params: object) -> None:
    from app.config import load_settings_or_exit
    from app.telegram_client import TelegramClient, TelegramClientError

    settings = load_settings_or_exit()

    async def go() -> dict[str, object]:
        async with httpx.AsyncClient() as http:
            client = TelegramClient(http, settings.BOT_TOKEN, base=settings.TELEGRAM_API_BASE)
            return await client.call(method, {k: v for k, v in params.items() if v is not None})

    try:
        result = asyncio.run(go())
    except TelegramClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(result))


@app.command("set-webhook")
def set_webhook(url: str) -> None:
    """Tell Telegram to deliver updates to URL (with WEBHOOK_SECRET_TOKEN if set)."""
    from app.config import load_settings_or_exit

    secret = load_settings_or_exit().WEBHOOK_SECRET_TOKEN
    _telegram_call("setWebhook", url=url, secret_token=secret)


@app.command("delete-webhook")
def delete_webhook() -> None:
    """Stop webhook delivery."""
    _telegram_call("deleteWebhook")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
