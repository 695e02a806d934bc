"""``python -m sandbox --port 8081``: run the sandbox without remembering the uvicorn line."""

from __future__ import annotations

import argparse

import uvicorn

from sandbox.app import create_app
from sandbox.config import SandboxConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=None, help="bot token (else SANDBOX_BOT_TOKEN)")
    args = parser.parse_args(argv)
    config = SandboxConfig()
    if args.token:
        config = config.model_copy(update={"bot_token": args.token})
    uvicorn.run(create_app(config), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
