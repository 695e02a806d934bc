"""Memory of the gateway under many large webhook bodies at once (issue 14).

Starts the gateway as a real uvicorn process (SQLite inbox, processing disabled), posts
`--requests` updates of `--size` bytes each all at once (one connection each), and prints the
process's resident memory before and its peak after (`VmHWM` from /proc), with the answers.
Unbounded, 200 concurrent 1 MB bodies took it to ~720 MB (each body held as bytes, text and
parsed object until its row was committed); the webhook now handles at most 8 bodies over
64 KiB at a time.

    .venv/bin/python -m bench.webhook_memory [--requests 200] [--size 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter
from pathlib import Path

import httpx

from tests.support.servers import ServerProcess

SECRET = "bench-secret-token"


def memory_kib(pid: int) -> dict[str, int]:
    """`VmRSS` and `VmHWM` (peak resident) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


async def run(requests: int, size: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="gw-memory-"))
    env = {
        "BOT_TOKEN": "123456:bench-token-not-real",
        "USER_SERVICE_BASE": "http://127.0.0.1:9",
        "WEBHOOK_SECRET_TOKEN": SECRET,
        "WEBHOOK_URL": "",
        "DATABASE_URL": f"sqlite:///{folder / 'gw.db'}",
        "PROCESSING_ENABLED": "false",
        "MAX_BODY_BYTES": str(size + 1024),
        "LOG_LEVEL": "WARNING",
    }
    with ServerProcess("app.main:app", env, ready_path="/ready", log_dir=folder) as proc:
        assert proc.proc is not None
        before = memory_kib(proc.proc.pid)
        bodies = [
            json.dumps(
                {"update_id": i, "message": {"chat": {"id": i}, "text": "a" * size}}
            ).encode()
            for i in range(1, requests + 1)
        ]
        limits = httpx.Limits(max_connections=requests)
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with httpx.AsyncClient(limits=limits, timeout=120) as http:
            answers = await asyncio.gather(
                *(
                    http.post(proc.url + "/webhook/telegram", content=b, headers=headers)
                    for b in bodies
                )
            )
        after = memory_kib(proc.proc.pid)
    statuses = dict(Counter(r.status_code for r in answers))
    print(f"{requests} concurrent bodies of {size} bytes: answers {statuses}")
    print(f"  resident before  {before['VmRSS'] / 1024:7.1f} MiB")
    print(f"  peak resident    {after['VmHWM'] / 1024:7.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.size))


if __name__ == "__main__":
    main()
