"""Webhook ingest under load: the gateway's durable webhook vs a bare Starlette ceiling.

Starts each server as a real uvicorn process (one worker, uvloop + httptools) on 127.0.0.1,
drives it with `bench.loadgen` (40 keep-alive connections, unique update ids, realistic
message bodies) for a fixed time, and prints throughput and latency percentiles side by side.

- baseline: `bench/baseline_app.py`, a bare Starlette endpoint that only parses JSON (the ceiling);
- gateway (sqlite): `app.main:app` with its durable inbox on a SQLite file (FULL sync),
  processing disabled (ingest only: no User Service or agent is running in the bench);
- gateway (postgres): the same on PostgreSQL, when the server at 127.0.0.1:5432 answers.

Goals (issue #2): gateway >= 50% of the baseline's throughput, p99 < 25 ms. After the run the
script checks that every acknowledged update really is in the inbox (count of rows).

    .venv/bin/python -m bench.webhook_ingest [--duration 10] [--connections 40] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.storage.engine import make_engine
from app.storage.tables import inbox
from bench import loadgen
from tests.support.pg import postgres_available, temp_database
from tests.support.servers import ServerProcess

SECRET = "bench-secret-token"
TOKEN = "123456:bench-token-not-real"
LUA = Path(__file__).with_name("webhook.lua")


def load(url: str, connections: int, duration: float, start_id: int) -> dict[str, Any]:
    """Drive `url` with wrk when installed (a C client costs the server less CPU), else loadgen."""
    if shutil.which("wrk") and not os.environ.get("BENCH_NO_WRK"):
        return load_wrk(url, connections, duration, start_id)
    return loadgen.drive(
        url, secret=SECRET, connections=connections, duration=duration, start_id=start_id
    )


def load_wrk(url: str, connections: int, duration: float, start_id: int) -> dict[str, Any]:
    # A short warm-up first, so both targets are measured hot.
    for seconds, first_id in ((1, start_id - 5_000_000), (duration, start_id)):
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "-s",
                str(LUA),
                url + "/webhook/telegram",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 60,
            env={**os.environ, "WRK_START_ID": str(first_id), "WRK_SECRET": SECRET},
        )
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK_JSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    result["client"] = "wrk"
    result["statuses"] = {"200": result["requests"] - result["non_2xx"], "other": result["non_2xx"]}
    result["warmup"] = True
    return result


def uvicorn_args() -> tuple[str, ...]:
    return ("--loop", "uvloop", "--http", "httptools", "--log-level", "warning")


async def count_rows(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one())
    finally:
        await engine.dispose()


def gateway_env(database_url: str) -> dict[str, str]:
    return {
        "BOT_TOKEN": TOKEN,
        "WEBHOOK_SECRET_TOKEN": SECRET,
        "USER_SERVICE_BASE": "http://127.0.0.1:9",
        "DATABASE_URL": database_url,
        "PROCESSING_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }


def run_gateway(name: str, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    with ServerProcess(
        "app.main:app", gateway_env(database_url), ready_path="/ready", extra_args=uvicorn_args()
    ) as server:
        result = load(server.url, args.connections, args.duration, start_id=10_000_000)
    stored = asyncio.run(count_rows(database_url))
    acked = int(result["statuses"].get("200", 0))
    result["stored_rows"] = stored
    # Warm-up requests are stored too, so `stored` may exceed the timed run's acks, never less.
    result["acked_but_missing"] = max(0, acked - stored)
    result["name"] = name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    with ServerProcess("bench.baseline_app:app", extra_args=uvicorn_args()) as base:
        baseline = load(base.url, args.connections, args.duration, start_id=1_000_000)
    baseline["name"] = "baseline: bare Starlette, parse JSON only"
    results.append(baseline)

    with tempfile.TemporaryDirectory() as tmp:
        results.append(
            run_gateway("gateway: durable inbox, SQLite", f"sqlite:///{Path(tmp) / 'gw.db'}", args)
        )
    if not args.no_postgres:
        reason = postgres_available()
        if reason is None:
            with temp_database("bench") as pg_url:
                results.append(run_gateway("gateway: durable inbox, PostgreSQL", pg_url, args))
        else:
            print(f"(PostgreSQL run skipped: {reason})")

    client = results[0].get("client", "bench.loadgen")
    print(
        f"\nwebhook ingest, {args.connections} connections, {args.duration:.0f} s each, "
        f"client: {client}, one uvicorn worker (uvloop, httptools)\n"
    )
    header = f"{'target':44} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}  vs base"
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = r["rps"] / baseline["rps"] if baseline["rps"] else 0.0
        print(
            f"{r['name']:44} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['max_ms']:>8.2f}  {ratio:6.0%}"
        )
    print()
    for r in results[1:]:
        ok_ratio = r["rps"] >= 0.5 * baseline["rps"]
        ok_p99 = r["p99_ms"] < 25
        print(
            f"{r['name']}: statuses {r['statuses']}, rows stored {r['stored_rows']}, "
            f"acknowledged but missing {r['acked_but_missing']}; "
            f"goal >=50% of baseline: {'met' if ok_ratio else 'NOT met'}; "
            f"p99 < 25 ms: {'met' if ok_p99 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
