"""A small closed-loop HTTP/1.1 load generator (keep-alive, fixed concurrency).

Why not httpx: at 40 connections its per-request overhead would make the client, not the
server, the bottleneck on a 2-core machine. This writes pre-built requests on raw asyncio
streams (uvloop when available) and parses just enough of the response (status line and
Content-Length) to time it. Run as a separate process so it does not share a core's GIL with
the server under test.

    python -m bench.loadgen --url http://127.0.0.1:8000/webhook/telegram --connections 40 \
        --duration 10 --header 'X-Telegram-Bot-Api-Secret-Token: s' --start-id 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

BODY_TEMPLATE = (
    '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,'
    '"first_name":"Linh","last_name":"Nguyen","username":"linh_%d","language_code":"vi"},'
    '"chat":{"id":%d,"first_name":"Linh","last_name":"Nguyen","username":"linh_%d",'
    '"type":"private"},"date":1732780800,"text":"Xin chào, tôi muốn hỏi về đơn hàng số %d"}}'
)


def build_request(host: str, path: str, headers: list[str], update_id: int) -> bytes:
    user = 100000 + update_id % 5000
    body = (BODY_TEMPLATE % (update_id, update_id, user, user, user, user, update_id)).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
        "",
        "",
    ]
    return "\r\n".join(head).encode() + body


async def worker(
    host: str,
    port: int,
    path: str,
    headers: list[str],
    ids: list[int],
    deadline: float,
    latencies: list[float],
    statuses: dict[int, int],
    stop: asyncio.Event,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while not stop.is_set() and time.perf_counter() < deadline and ids:
            update_id = ids.pop()
            request = build_request(host, path, headers, update_id)
            t0 = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            status = int(status_line.split()[1]) if status_line else 0
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port, path = url.hostname or "127.0.0.1", url.port or 80, url.path
    ids = list(range(args.start_id + args.max_requests, args.start_id, -1))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = asyncio.Event()
    # Warm-up: a few requests so JITs/caches/connections are in place before timing.
    warm_ids = [args.start_id - i for i in range(1, 201)]
    await asyncio.gather(
        *(
            worker(host, port, path, args.header, warm_ids, time.perf_counter() + 5, [], {}, stop)
            for _ in range(4)
        )
    )
    start = time.perf_counter()
    deadline = start + args.duration
    await asyncio.gather(
        *(
            worker(host, port, path, args.header, ids, deadline, latencies, statuses, stop)
            for _ in range(args.connections)
        )
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] * 1000 if n else float("nan")

    return {
        "requests": n,
        "seconds": round(elapsed, 3),
        "rps": round(n / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(pct(0.50), 2),
        "p90_ms": round(pct(0.90), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1] * 1000, 2) if n else float("nan"),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if n else float("nan"),
        "statuses": statuses,
    }


def drive(
    url: str,
    *,
    secret: str,
    connections: int,
    duration: float,
    start_id: int,
    max_requests: int = 0,
    prefix: Sequence[str] = (),
) -> dict[str, Any]:
    """Run this load generator as its own process against a gateway's webhook at `url` (the
    base URL) and return its result; `prefix` goes before the command (e.g. `taskset -c 1`)."""
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url + "/webhook/telegram",
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--start-id",
        str(start_id),
        "--header",
        f"X-Telegram-Bot-Api-Secret-Token: {secret}",
        *(["--max-requests", str(max_requests)] if max_requests else []),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 120)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--start-id", type=int, default=1_000_000)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
