"""Scale-out figures (issue 12): ingest vs processing, gateway overhead, bursts, 1-3 replicas.

Everything runs as real processes on 127.0.0.1: gateways (`bench.counted_app`, the real app
plus database round-trip counters), the chaos harness's peers (`tests.chaos.peers`: Telegram
with flood limits, User Service and agent in one process, faults off, answering at once), the
load generator (`bench.loadgen`, closed loop, keep-alive, unique update ids; 5000 users).
Servers are pinned to core 0 and the load generator to core 1 (`taskset`) where the part says
so; a second gateway process and the peers share core 1 with the load generator.

Parts (``--parts``, comma-separated; all by default):

- ``ingest``: webhook req/s and p50/p99 for the bare baseline app, a ``--role ingest`` gateway
  (workers off), a ``--role all`` gateway whose workers drain what comes in, and ``--role
  ingest`` with a separate ``--role worker`` process; the share of the baseline's req/s.
- ``overhead``: webhook POST to the reply's ``sendMessage`` at the stand-in, peers instant, one
  update at a time (10/s, 10 chats): the gateway's own time per reply, p50/p90.
- ``burst``: 40 chats write at once, their replies are released together against a stand-in
  that refuses more than 8 back to back at 30/s: 429s counted, for 1 replica, 3 replicas with
  shared pacing, and 3 replicas each pacing alone at the full 30/s (what sharing prevents).
- ``replicas``: one backlog (stored by an ingest-only process), drained by 1, 2 and 3
  replicas on one PostgreSQL with Telegram's limits lifted (the gateway's capacity, not the
  Bot API's): updates/s, and statements, commits and round trips per update.
- ``commits``: what this PostgreSQL commits per second (one-row INSERTs in autocommit, 1, 8
  and 32 connections, logged and UNLOGGED): the ceiling the updates' commits share.

Figures are printed; nothing is asserted. Keep the machine quiet: every part is a few seconds.

    .venv/bin/python -m bench.scale [--parts ingest,overhead,burst,replicas,commits] \
        [--duration 5] [--backlog 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from app.storage.engine import make_engine
from bench import loadgen
from tests.support.pg import postgres_available, temp_database
from tests.support.servers import ServerProcess, free_port

SECRET = "bench-secret-token"
TOKEN = "123456:bench-token-not-real"
UVICORN = ("--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log")
LIFTED = {  # Telegram's limits out of the way: what the gateway itself can do
    "RATE_GLOBAL_PER_SECOND": "100000",
    "RATE_CHAT_PER_SECOND": "1000",
    "RATE_CHAT_BURST": "1000",
    "RATE_GROUP_PER_MINUTE": "100000",
}
PEERS_LIFTED = {
    "CHAOS_BOT_RATE": "1000000",
    "CHAOS_BOT_BURST": "1000000",
    "CHAOS_CHAT_RATE": "1000000",
    "CHAOS_CHAT_BURST": "1000000",
}


def _taskset(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None and shutil.which("taskset") else []


def server(
    app: str, env: dict[str, str], *, cpu: str | None, name: str, factory: bool = False
) -> ServerProcess:
    port = free_port()
    argv = [
        *_taskset(cpu),
        sys.executable,
        "-m",
        "uvicorn",
        app,
        *(["--factory"] if factory else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *UVICORN,
        "--timeout-keep-alive",
        "75",
    ]
    ready = "/control/health" if "peers" in app else "/health" if "baseline" in app else "/ready"
    return ServerProcess(app, env, port=port, ready_path=ready, name=name, argv=argv)


def peers(cpu: str | None, **env: str) -> ServerProcess:
    instant = {
        "CHAOS_FAULT_429": "0",
        "CHAOS_FAULT_502": "0",
        "CHAOS_AGENT_MAX_DELAY": "0",
        "CHAOS_USERS_LATENCY": "0",
        "CHAOS_TELEGRAM_LATENCY": "0",
    }
    return server(
        "tests.chaos.peers:create_app", instant | env, cpu=cpu, name="peers", factory=True
    )


def gateway(
    database_url: str, peers_url: str, role: str, *, cpu: str | None, name: str, **extra: str
) -> ServerProcess:
    env = {
        "BOT_TOKEN": TOKEN,
        "WEBHOOK_SECRET_TOKEN": SECRET,
        "DATABASE_URL": database_url,
        "UPDATE_MODE": "webhook",
        "WEBHOOK_URL": "",
        "GATEWAY_ROLE": role,
        "TELEGRAM_API_BASE": f"{peers_url}/tg/{name}",
        "USER_SERVICE_BASE": f"{peers_url}/users/{name}",
        "AGENT_SERVICE_BASE": f"{peers_url}/agent/{name}",
        "USER_SERVICE_API_KEY": "",
        "AGENT_SERVICE_API_KEY": "",
        "TURN_MODE": "queue",  # one turn per message: throughput, not merging, is measured
        "TURN_DEBOUNCE": "0",
        "STREAM_MODE": "off",
        "POLL_INTERVAL": "0.2",
        "SQLITE_SYNCHRONOUS": "NORMAL",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    return server("bench.counted_app:create", env, cpu=cpu, name=name, factory=True)


def load(url: str, *, seconds: float, start_id: int, cpu: str | None, count: int = 0) -> Any:
    return loadgen.drive(
        url,
        secret=SECRET,
        connections=40,
        duration=seconds,
        start_id=start_id,
        max_requests=count,
        prefix=_taskset(cpu),
    )


def cpu_seconds(proc: ServerProcess) -> float:
    """User + system CPU the process has used (Linux /proc), to price an update in CPU."""
    assert proc.proc is not None
    try:
        fields = Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sql_counts(gw: ServerProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{gw.url}/bench/sql", timeout=10).json()
    return body


def report(peers_proc: ServerProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{peers_proc.url}/control/report", timeout=60).json()
    return body


async def _inbox_states(database_url: str) -> dict[str, int]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT state, count(*) FROM inbox GROUP BY state"))
            states = {str(r[0]): int(r[1]) for r in rows}
            jobs = await conn.execute(
                text("SELECT count(*) FROM delivery_jobs WHERE state IN ('recorded', 'skipped')")
            )
            states["replies recorded"] = int(jobs.scalar_one())
            return states
    finally:
        await engine.dispose()


def inbox_states(database_url: str) -> dict[str, int]:
    return asyncio.run(_inbox_states(database_url))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


@contextmanager
def pg_database() -> Iterator[str]:
    with temp_database("scale") as url:
        yield url


# --- part: ingest -------------------------------------------------------------------------------


def part_ingest(args: argparse.Namespace) -> None:
    d = args.duration
    rows: list[tuple[str, dict[str, Any], str]] = []
    with server("bench.baseline_app:app", {}, cpu="0", name="baseline") as base:
        baseline = load(base.url, seconds=d, start_id=1_000_000, cpu="1")
    rows.append(("baseline: bare Starlette, parse JSON", baseline, ""))
    with pg_database() as url, peers("1") as p:
        with gateway(url, p.url, "ingest", cpu="0", name="ingest") as gw:
            r = load(gw.url, seconds=d, start_id=2_000_000, cpu="1")
            c = sql_counts(gw)
        rows.append(("gateway --role ingest (workers off)", r, _per(c, r["requests"] + 200)))
    with pg_database() as url, peers("1") as p:
        with gateway(url, p.url, "all", cpu="0", name="all", **LIFTED) as gw:
            r = load(gw.url, seconds=d, start_id=3_000_000, cpu="1")
            done = inbox_states(url).get("done", 0)
        rows.append(("gateway --role all (workers draining)", r, f"{done} processed meanwhile"))
    with pg_database() as url, peers("1") as p:
        with (
            gateway(url, p.url, "ingest", cpu="0", name="ingest") as gw,
            gateway(url, p.url, "worker", cpu="1", name="worker", **LIFTED),
        ):
            r = load(gw.url, seconds=d, start_id=4_000_000, cpu="1")
            done = inbox_states(url).get("done", 0)
        rows.append(("--role ingest + --role worker (core 1)", r, f"{done} processed meanwhile"))
    print(f"\n## webhook ingest on PostgreSQL, 40 connections, {d:g} s each")
    print("server on core 0, load generator on core 1 (the worker and peers share core 1)\n")
    print("| target | req/s | share of baseline | p50 ms | p99 ms | note |")
    print("|---|---|---|---|---|---|")
    for name, r, note in rows:
        share = r["rps"] / baseline["rps"] if baseline["rps"] else 0.0
        print(
            f"| {name} | {r['rps']:.0f} | {share:.0%} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {note} |"
        )


def _per(counts: dict[str, Any], updates: int) -> str:
    """The webhook's insert goes to the driver directly (one statement per batch, autocommit):
    SQLAlchemy sees only the check-out (a pre-ping) of each batch; housekeeping adds a little."""
    if not updates:
        return ""
    batches = counts.get("checkouts", 0)
    other = sum(counts.get(k, 0) for k in ("statements", "begins", "commits", "rollbacks"))
    return (
        f"{updates / max(batches, 1):.1f} updates per batch; per update "
        f"{(2 * batches + other) / updates:.2f} round trips, {batches / updates:.2f} commits"
    )


# --- part: overhead -----------------------------------------------------------------------------


def part_overhead(args: argparse.Namespace) -> None:
    print("\n## webhook -> reply, peers instant, one update at a time (10/s over 10 chats)\n")
    print("| database | replies | p50 ms | p90 ms | p99 ms | first contact p50 ms |")
    print("|---|---|---|---|---|---|")
    for db in ("sqlite", "postgres"):
        if db == "postgres" and postgres_available() is not None:
            continue
        with ExitStack() as stack:
            if db == "postgres":
                url = stack.enter_context(pg_database())
            else:
                tmp = stack.enter_context(_tmpdir())
                url = f"sqlite:///{tmp}/gw.db"
            p = stack.enter_context(peers("1"))
            gw = stack.enter_context(gateway(url, p.url, "all", cpu="0", name="gw"))
            lat, first = _overhead_run(gw, p, n=int(args.duration * 10))
        print(
            f"| {db} | {len(lat)} | {pct(lat, 0.5):.1f} | {pct(lat, 0.9):.1f} | "
            f"{pct(lat, 0.99):.1f} | {statistics.median(first) if first else float('nan'):.1f} |"
        )


@contextmanager
def _tmpdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        yield tmp


def _update(update_id: int, chat: int, text_: str) -> dict[str, Any]:
    sender = {"id": chat, "is_bot": False, "first_name": "Bench"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": sender,
            "chat": {"id": chat, "type": "private", "first_name": "Bench"},
            "date": int(time.time()),
            "text": text_,
        },
    }


def _overhead_run(gw: ServerProcess, p: ServerProcess, n: int) -> tuple[list[float], list[float]]:
    posted: dict[str, tuple[float, bool]] = {}
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    with httpx.Client(base_url=gw.url, headers=headers, timeout=10) as http:
        for i in range(n + 10):
            chat = 500_000 + i % 10
            body = f"overhead {i}"
            t0 = time.monotonic()
            http.post("/webhook/telegram", json=_update(9_000_000 + i, chat, body))
            posted[f"re: {body}"] = (t0, i < 10)
            time.sleep(max(0.0, t0 + 0.1 - time.monotonic()))  # load shape: 10 per second
    deadline = time.monotonic() + 20
    sends: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        sends = report(p)["sends"]
        if len(sends) >= len(posted):
            break
        time.sleep(0.2)
    lat: list[float] = []
    first: list[float] = []
    for s in sends:
        hit = posted.get(s["text"])
        if hit is not None:
            ms = (s["mono"] - hit[0]) * 1000  # CLOCK_MONOTONIC is one clock for all processes
            (first if hit[1] else lat).append(ms)
    return lat, first


# --- part: burst --------------------------------------------------------------------------------


def part_burst(args: argparse.Namespace) -> None:
    if postgres_available() is not None:
        print("\n(burst part skipped: no PostgreSQL)")
        return
    print("\n## 40 chats' replies released at once; stand-in refuses > 8 back to back at 30/s\n")
    print("| set-up | replies (per replica) | pacing 429 | send span s | replies/s |")
    print("|---|---|---|---|---|")
    cases = [
        ("1 replica, RATE_GLOBAL_PER_SECOND=30", 1, {}),
        ("3 replicas, shared pacing, 30 each (the bot's)", 3, {}),
        (
            "3 replicas, each alone at 30 (RATE_GLOBAL_SHARED=false)",
            3,
            {"RATE_GLOBAL_SHARED": "false"},
        ),
    ]
    for label, n, extra in cases:
        # The agent answers the 40 calls together once all 40 wait: the replies are ready at
        # the same moment and meet at the pacer(s); every chat has an agent call in flight.
        with (
            pg_database() as url,
            peers("1", CHAOS_AGENT_GATE="40") as p,
            ExitStack() as stack,
        ):
            gws = [
                stack.enter_context(
                    gateway(
                        url,
                        p.url,
                        "all",
                        cpu=None,
                        name=f"gw{i}",
                        WORKER_CONCURRENCY=str(-(-40 // n) + 1),  # replicas share the 40 chats
                        **extra,
                    )
                )
                for i in range(n)
            ]
            sends, refusals, split = _burst_run(gws, p)
        span = (max(sends) - min(sends)) if len(sends) > 1 else 0.0
        rate = (len(sends) - 1) / span if span else float("nan")
        print(f"| {label} | {len(sends)} ({split}) | {refusals} | {span:.2f} | {rate:.1f} |")


def _burst_run(gws: list[ServerProcess], p: ServerProcess) -> tuple[list[float], int, str]:
    """40 chats write at once (spread over the replicas); the replies leave as paced."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}

    async def post_all() -> None:
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            await asyncio.gather(
                *(
                    http.post(
                        f"{gws[i % len(gws)].url}/webhook/telegram",
                        json=_update(8_000_000 + i, 700_000 + i, f"burst {i}"),
                    )
                    for i in range(40)
                )
            )

    asyncio.run(post_all())
    deadline = time.monotonic() + 30
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = report(p)
        if len(body["sends"]) >= 40:
            break
        time.sleep(0.2)
    replies = [s for s in body.get("sends", []) if str(s["text"]).startswith("re:")]
    by_replica = Counter(str(s["tag"]) for s in replies)
    split = "/".join(str(by_replica[g]) for g in sorted(by_replica))
    return [float(s["mono"]) for s in replies], len(body.get("refusals", [])), split


# --- part: replicas -----------------------------------------------------------------------------


def part_replicas(args: argparse.Namespace) -> None:
    if postgres_available() is not None:
        print("\n(replicas part skipped: no PostgreSQL)")
        return
    backlog = args.backlog
    rows = []
    shapes: dict[str, int] = {}
    cpus: list[tuple[float, float]] = []  # (gateways' CPU seconds, peers' CPU seconds)
    pools: list[tuple[int, int]] = []  # (new database connections, most checked out at once)
    for n in args.replicas:
        with pg_database() as url, peers(None, **PEERS_LIFTED) as p:
            with gateway(url, p.url, "ingest", cpu="0", name="ingest") as ing:
                load(ing.url, seconds=60, start_id=5_000_000, cpu="1", count=backlog)
            total = sum(v for k, v in inbox_states(url).items() if k != "replies recorded")
            with ExitStack() as stack:
                began = time.monotonic()
                gws = [
                    stack.enter_context(
                        gateway(
                            url,
                            p.url,
                            "worker",
                            cpu=None,
                            name=f"w{i}",
                            WORKER_CONCURRENCY=str(args.concurrency),
                            **LIFTED,
                        )
                    )
                    for i in range(n)
                ]
                ready = time.monotonic() - began
                cpu0 = [cpu_seconds(g) for g in gws] + [cpu_seconds(p)]
                t0 = time.monotonic()
                deadline = t0 + 120
                states: dict[str, int] = {}
                while time.monotonic() < deadline:
                    states = inbox_states(url)
                    if states.get("replies recorded", 0) >= total:
                        break
                    time.sleep(0.25)
                took = time.monotonic() - t0
                cpu1 = [cpu_seconds(g) for g in gws] + [cpu_seconds(p)]
                counts = [sql_counts(g) for g in gws]
                if n == 1:
                    shapes = counts[0].get("shapes", {})
            sent = len(report(p)["sends"])
        c = {
            k: sum(x.get(k, 0) for x in counts)
            for k in ("statements", "begins", "commits", "rollbacks", "checkouts")
        }
        done = states.get("replies recorded", 0)
        trips = sum(c.values()) + sent  # + the lane's one record statement per send
        pools.append(
            (
                sum(x.get("connects", 0) for x in counts),
                max((x.get("checked_out_max", 0) for x in counts), default=0),
            )
        )
        gw_cpu = sum(b - a for a, b in zip(cpu0[:-1], cpu1[:-1], strict=True))
        cpus.append((gw_cpu, cpu1[-1] - cpu0[-1]))
        rows.append((n, total, done, took, ready, c, sent, trips))
    print(
        f"\n## one backlog of {backlog}+200 updates drained by N replicas on one PostgreSQL "
        f"(WORKER_CONCURRENCY={args.concurrency})"
    )
    print("Telegram's limits lifted (gateway capacity); replicas and peers unpinned, 2 cores\n")
    print(
        "| replicas | updates | replied | seconds | updates/s | statements/upd | commits/upd "
        "| round trips/upd | gateway CPU ms/upd | peers CPU ms/upd |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (n, total, done, took, _ready, c, _sent, trips), (gw_cpu, peer_cpu) in zip(
        rows, cpus, strict=True
    ):
        per = max(done, 1)
        print(
            f"| {n} | {total} | {done} | {took:.1f} | {done / took:.0f} | "
            f"{c['statements'] / per:.1f} | {c['commits'] / per:.2f} | {trips / per:.1f} | "
            f"{gw_cpu * 1000 / per:.1f} | {peer_cpu * 1000 / per:.1f} |"
        )
    print(
        "\nround trips = statements + BEGIN + COMMIT + ROLLBACK + pool pre-pings (check-outs) "
        "+ the send lane's record (one per message sent); the ingest process is not included "
        "(see the ingest part)."
    )
    for (n, _total, done, _took, _ready, c, sent, _trips), (connects, peak) in zip(
        rows, pools, strict=True
    ):
        per = max(done, 1)
        detail = ", ".join(f"{k} {v / per:.2f}" for k, v in c.items())
        print(
            f"  {n} replica(s), per update: {detail}, lane records {sent / per:.2f}; "
            f"new connections {connects} ({connects / per:.2f}/update), "
            f"most checked out at once {peak}"
        )
    print("\nstatements per update by kind (1 replica):")
    for shape, count in sorted(shapes.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {count / max(rows[0][2], 1):5.2f}  {shape}")


# --- part: commits ------------------------------------------------------------------------------


def part_commits(args: argparse.Namespace) -> None:
    """What one PostgreSQL commits per second here: the ceiling every update's commits share."""
    if postgres_available() is not None:
        print("\n(commits part skipped: no PostgreSQL)")
        return
    print(
        f"\n## PostgreSQL commit rate, {args.duration:g} s per row (one-row INSERT, autocommit)\n"
    )
    print("| connections | commits/s | table |")
    print("|---|---|---|")
    for unlogged in (False, True):
        for conns in (1, 8, 32):
            with pg_database() as url:
                rate = asyncio.run(_commit_rate(url, conns, args.duration, unlogged))
            kind = "UNLOGGED" if unlogged else "logged"
            print(f"| {conns} | {rate:.0f} | {kind} |")


async def _commit_rate(url: str, conns: int, seconds: float, unlogged: bool) -> float:
    import asyncpg

    setup = await asyncpg.connect(url)
    kind = "UNLOGGED " if unlogged else ""
    await setup.execute(f"CREATE {kind}TABLE c (id bigserial primary key, v float8)")
    await setup.close()
    pool = await asyncpg.create_pool(url, min_size=conns, max_size=conns)
    done = 0
    deadline = time.monotonic() + seconds

    async def writer() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.monotonic() < deadline:
                await conn.execute("INSERT INTO c (v) VALUES ($1)", time.time())
                done += 1

    began = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(conns)))
    took = time.monotonic() - began
    await pool.close()
    return done / took


PARTS = {
    "ingest": part_ingest,
    "overhead": part_overhead,
    "burst": part_burst,
    "replicas": part_replicas,
    "commits": part_commits,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--backlog", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16, help="WORKER_CONCURRENCY, replicas")
    parser.add_argument(
        "--replicas",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[1, 2, 3],
        help="replica counts for the replicas part, e.g. 1,3",
    )
    args = parser.parse_args()
    reason = postgres_available()
    if reason is not None:
        print(f"PostgreSQL not available ({reason}): most parts need it")
    for name in args.parts.split(","):
        PARTS[name.strip()](args)


if __name__ == "__main__":
    main()
