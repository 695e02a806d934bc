"""`python -m agent_service [--host H] [--port P]`: run the service with uvicorn.

Configuration comes from the environment (docs/agent-service.md); it is checked before the
server starts, so a mistake exits with code 2 and a message naming the variable.
"""

from __future__ import annotations

import argparse

import uvicorn

from agent_service.app import create_app
from agent_service.config import load_settings_or_exit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent_service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="listen port (default 9000)")
    opts = parser.parse_args(argv)
    settings = load_settings_or_exit()
    uvicorn.run(
        create_app(settings),
        host=opts.host,
        port=opts.port,
        log_config=None,  # our JSON handler on the root logger renders uvicorn's lines too
        access_log=False,
    )


if __name__ == "__main__":
    main()
