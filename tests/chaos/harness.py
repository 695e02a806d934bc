"""One chaos scenario, start to finish: peers, N real gateways, the driver, the killer, counts.

The gateways are the real thing (``python -m uvicorn app.main:app``), each on its own port,
all on one database: a SQLite file for one process, a fresh PostgreSQL database for several.
While the driver delivers the updates Telegram-style, the killer sends SIGKILL to a random
replica at random moments and starts it again on the same port with the same database after a
short random pause. When the last update is acknowledged and the last kill done, everything keeps
running until every acknowledged message is answered and recorded (or a deadline passes); then
the gateways stop gracefully and the stand-ins' record is turned into counts (`analysis`).

Kills use `ServerProcess.kill()` (SIGKILL to the uvicorn process): `ServerProcess` does not start
a new session, so `os.killpg` would hit the test runner's own process group. uvicorn runs with
no workers or reloader here, so that process is the whole gateway.

Pacing across replicas: on PostgreSQL the replicas share the bot's pace through the database
(`app.delivery.pacing.SharedPacer`), so every replica runs with the whole bot's
``RATE_GLOBAL_PER_SECOND`` (30) against the stand-in's bot-wide 30/s (burst 8), and the run
proves the replicas together stay under it. ``CHAOS_SHARED_PACING=0`` turns the sharing off
and gives each of N replicas 30/N instead (the old workaround, for comparison).

Each gateway incarnation calls the peers under its own tag (``/tg/gw0-3``, ``/users/gw0-3``,
``/agent/gw0-3``: replica 0, third start), so every send and history row says who made it.
Logs, the SQLite file, the peers' raw report and the counts stay in
``test-artifacts/logs/chaos-<name>-<time>/``; the counts also go to
``test-artifacts/chaos/<name>.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from tests.chaos.analysis import ChaosCounts, Kill, analyse, settled
from tests.chaos.driver import ChatPlan, DriveResult, drive, plan_updates
from tests.chaos.peers import PeersConfig
from tests.support.servers import ROOT, ServerProcess, free_port

ARTIFACTS = ROOT / "test-artifacts"
ADMIN_TOKEN = "chaos-admin-token"  # a throw-away token for local test processes


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class Scenario:
    """What to run. `from_env` applies the ``CHAOS_*`` overrides (see the README of the tests)."""

    name: str
    db: str = "sqlite"  # "sqlite" | "postgres"
    replicas: int = 1
    updates: int = 400
    chats: int = 40
    groups: int = 4
    callbacks: int = 3
    kills: int = 20
    rate: float = 30.0  # new updates per second, all chats together
    seed: int = 0
    lease_seconds: float = 10.0
    shared_pacing: bool = True
    # How long a replica runs before the next kill, and how long it stays dead (seconds).
    kill_gap: tuple[float, float] = (0.2, 1.2)
    restart_pause: tuple[float, float] = (0.05, 0.4)
    drive_timeout: float = 240.0
    settle_timeout: float = 45.0
    peers: PeersConfig = field(default_factory=PeersConfig)

    @classmethod
    def from_env(cls, name: str, **fields: Any) -> Scenario:
        base = cls(name, **fields)
        seed = _env_int("CHAOS_SEED", base.seed or random.SystemRandom().randrange(1, 1_000_000))
        lease = _env_float("CHAOS_LEASE_SECONDS", base.lease_seconds)
        return replace(
            base,
            updates=_env_int("CHAOS_UPDATES", base.updates),
            chats=_env_int("CHAOS_CHATS", base.chats),
            kills=_env_int("CHAOS_KILLS", base.kills) if base.kills else 0,
            rate=_env_float("CHAOS_RATE", base.rate),
            seed=seed,
            lease_seconds=lease,
            shared_pacing=os.environ.get("CHAOS_SHARED_PACING", "1" if base.shared_pacing else "0")
            != "0",
            settle_timeout=_env_float("CHAOS_SETTLE_SECONDS", max(base.settle_timeout, 4 * lease)),
        )


class Replica:
    """One gateway "slot": a port and a log file that survive kills; a process per start."""

    def __init__(self, index: int, env: dict[str, str], peers_url: str, log_dir: Path) -> None:
        self.name = f"gw{index}"
        self.port = free_port()
        self.env = env
        self.peers_url = peers_url
        self.log_dir = log_dir
        self.incarnation = 0
        self.server: ServerProcess | None = None
        self.up = False
        self.start_seconds: list[float] = []  # spawn to /ready, per start

    @property
    def tag(self) -> str:
        return f"{self.name}-{self.incarnation}"

    @property
    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook/telegram"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.port}.log"

    def start(self, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            self.incarnation += 1
            env = {
                **self.env,
                "TELEGRAM_API_BASE": f"{self.peers_url}/tg/{self.tag}",
                "USER_SERVICE_BASE": f"{self.peers_url}/users/{self.tag}",
                "AGENT_SERVICE_BASE": f"{self.peers_url}/agent/{self.tag}",
            }
            self.note("start", attempt=attempt)
            began = time.monotonic()
            self.server = ServerProcess(
                "app.main:app",
                env,
                port=self.port,
                ready_path="/ready",
                log_dir=self.log_dir,
                name=self.name,
            )
            try:
                self.server.start()
            except RuntimeError:
                # A gateway that cannot start after kill -9 is a finding: keep trying a little,
                # then let the scenario fail with the log path.
                self.note("start failed", attempt=attempt)
                if attempt == attempts:
                    raise
                time.sleep(0.5)
                continue
            self.up = True
            self.start_seconds.append(round(time.monotonic() - began, 2))
            self.note("ready", seconds=self.start_seconds[-1])
            return

    def kill(self) -> Kill:
        self.up = False
        assert self.server is not None
        kill = Kill(self.name, self.tag, time.monotonic(), time.time())
        self.server.kill()
        self.note("SIGKILL", mono=kill.mono)
        return kill

    def stop(self) -> int | None:
        self.up = False
        if self.server is None:
            return None
        self.note("SIGTERM")
        return self.server.stop(timeout=30)

    def force_stop(self) -> None:
        self.up = False
        if self.server is not None:
            self.server.kill()

    def note(self, event: str, **extra: Any) -> None:
        """A line of our own in the gateway's log, so a reader sees where each kill landed."""
        line = {"chaos": event, "tag": self.tag, "wall": time.time(), **extra}
        with self.log_path.open("a") as log:
            log.write(json.dumps(line) + "\n")


def _in_parallel(*actions: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def run(action: Callable[[], object]) -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@contextlib.contextmanager
def _database(scenario: Scenario, run_dir: Path) -> Iterator[str]:
    if scenario.db == "sqlite":
        yield f"sqlite:///{run_dir / 'gateway.db'}"
        return
    if scenario.db != "postgres":
        raise ValueError(f"unknown database kind {scenario.db!r} (sqlite or postgres)")
    from tests.support.pg import temp_database

    with temp_database("chaos") as url:
        yield url


def gateway_env(scenario: Scenario, token: str, secret: str, database_url: str) -> dict[str, str]:
    env = {
        "BOT_TOKEN": token,
        "WEBHOOK_SECRET_TOKEN": secret,
        "DATABASE_URL": database_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "UPDATE_MODE": "webhook",
        "WEBHOOK_URL": "",  # nobody to register with; the driver posts to each replica
        "USER_SERVICE_API_KEY": "",
        "AGENT_SERVICE_API_KEY": "",
        "PROCESSING_ENABLED": "true",
        "LEASE_SECONDS": str(scenario.lease_seconds),
        "POLL_INTERVAL": "0.2",
        "REQUEST_TIMEOUT": "3",
        "AGENT_TIMEOUT": "5",  # the agent answers within 0.4 s: "busy" would be a finding
        "RETRY_BASE_DELAY": "0.2",
        "RETRY_MAX_DELAY": "1",
        "RETRY_FLUSH_INTERVAL": "1",
        "SHUTDOWN_GRACE_SECONDS": "5",
        # Every group message must be answered (the counts expect a reply per marker); turns
        # keep their defaults (TURN_MODE=collect, TURN_DEBOUNCE=1): a reply may name several.
        "GROUP_REPLY": "all",
        # DEBUG shows each send and hook step (bigger logs, a little slower).
        "LOG_LEVEL": os.environ.get("CHAOS_GATEWAY_LOG_LEVEL", "INFO"),
    }
    env["RATE_GLOBAL_PER_SECOND"] = "30"  # the whole bot's budget, shared by the replicas
    if not scenario.shared_pacing:
        env["RATE_GLOBAL_SHARED"] = "false"
        env["RATE_GLOBAL_PER_SECOND"] = f"{30.0 / scenario.replicas:g}"
    return env


async def _kill_loop(
    replicas: list[Replica], scenario: Scenario, rng: random.Random, kills: list[Kill]
) -> None:
    """`scenario.kills` kills at random moments; each victim restarts after a random pause.

    One replica: the next gap starts when it is ready again. Several: restarts run in the
    background and the next victim is any replica that is up."""
    restarts: list[asyncio.Task[None]] = []

    async def restart(replica: Replica) -> None:
        await asyncio.sleep(rng.uniform(*scenario.restart_pause))
        await asyncio.to_thread(replica.start)

    for _ in range(scenario.kills):
        await asyncio.sleep(rng.uniform(*scenario.kill_gap))
        while not any(r.up for r in replicas):
            await asyncio.sleep(0.05)
        victim = rng.choice([r for r in replicas if r.up])
        kills.append(await asyncio.to_thread(victim.kill))
        task = asyncio.create_task(restart(victim))
        if len(replicas) == 1:
            await task
        else:
            restarts.append(task)
    await asyncio.gather(*restarts)


async def _report(http: httpx.AsyncClient, peers_url: str) -> dict[str, Any]:
    response = await http.get(f"{peers_url}/control/report", timeout=30)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


@dataclass
class _Run:
    drive: DriveResult
    kills: list[Kill]
    settled: bool
    drive_done: float
    settle_done: float


async def _chaos(
    scenario: Scenario,
    plans: list[ChatPlan],
    replicas: list[Replica],
    peers_url: str,
    secret: str,
) -> _Run:
    rng = random.Random(f"{scenario.seed}:harness")
    started = time.monotonic()
    kills: list[Kill] = []
    killer = asyncio.create_task(_kill_loop(replicas, scenario, rng, kills))
    try:
        result = await drive(
            plans,
            targets=lambda: [r.webhook for r in replicas if r.up],
            secret=secret,
            rate=scenario.rate,
            deadline=started + scenario.drive_timeout,
            rng=random.Random(f"{scenario.seed}:driver"),
        )
        await killer
    finally:
        if not killer.done():
            killer.cancel()
    drive_done = time.monotonic()
    deadline = drive_done + scenario.settle_timeout
    done = False
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if settled(result.acks, await _report(http, peers_url)):
                done = True
                break
            await asyncio.sleep(0.5)
    return _Run(result, kills, done, drive_done, time.monotonic())


def _admin_snapshot(replicas: list[Replica]) -> dict[str, Any]:
    """Dead updates, retry queue and inbox counts as each gateway sees them (diagnosis only)."""
    snapshot: dict[str, Any] = {}
    headers = {"X-Admin-Token": ADMIN_TOKEN}
    for r in replicas:
        if not r.up:
            continue
        base = f"http://127.0.0.1:{r.port}"
        try:
            snapshot[r.name] = {
                path: httpx.get(base + path, headers=headers, timeout=5).json()
                for path in ("/admin/inbox", "/admin/dead", "/admin/retry-queue")
            }
        except (httpx.HTTPError, ValueError) as exc:
            snapshot[r.name] = {"error": exc.__class__.__name__}
    return snapshot


def run_scenario(scenario: Scenario) -> ChaosCounts:
    """Run `scenario` and return its counts (`analysis.problems` says whether they pass)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = ARTIFACTS / "logs" / f"chaos-{scenario.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    token = f"{random.SystemRandom().randrange(10**8, 10**9)}:{secrets.token_urlsafe(24)}"
    secret = secrets.token_urlsafe(24)
    plans = plan_updates(
        updates=scenario.updates,
        chats=scenario.chats,
        groups=min(scenario.groups, scenario.chats),
        callbacks=scenario.callbacks,
        rng=random.Random(f"{scenario.seed}:plan"),
    )
    peers_config = replace(scenario.peers, seed=scenario.seed, bot_token=token)
    peers = ServerProcess(
        "tests.chaos.peers:create_app",
        peers_config.to_env(),
        ready_path="/control/health",
        log_dir=run_dir,
        name="peers",
        # Keep-alive longer than the gateways' pools keep idle connections (httpx: 5 s), so a
        # pooled connection is never closed under a request: uvicorn's default (also 5 s) makes
        # that race, and the agent call then fails with ReadError (a "busy" reply, no marker).
        extra_args=("--factory", "--timeout-keep-alive", "75"),
    )
    replicas: list[Replica] = []
    counts = ChaosCounts(scenario.name, scenario.db, scenario.replicas, scenario.seed)
    counts.log_dir = str(run_dir.relative_to(ROOT))
    try:
        with _database(scenario, run_dir) as database_url:
            peers.start()
            env = gateway_env(scenario, token, secret, database_url)
            replicas = [Replica(i, env, peers.url, run_dir) for i in range(scenario.replicas)]
            # The first one alone: it creates the schema the others then find.
            replicas[0].start()
            _in_parallel(*(r.start for r in replicas[1:]))
            run = asyncio.run(_chaos(scenario, plans, replicas, peers.url, secret))
            admin = _admin_snapshot(replicas)
            _in_parallel(*(r.stop for r in replicas))
            report = httpx.get(f"{peers.url}/control/report", timeout=30).json()
    finally:
        for r in replicas:
            r.force_stop()
        peers.stop()
    (run_dir / "report.json").write_text(json.dumps(report))
    analyse(counts, plans, run.drive, run.kills, report)
    counts.settled = run.settled
    counts.seconds_drive = round(run.drive_done - t0, 1)
    counts.seconds_settle = round(run.settle_done - run.drive_done, 1)
    counts.seconds_total = round(time.monotonic() - t0, 1)
    counts.details["gateway_logs"] = [str(r.log_path.relative_to(ROOT)) for r in replicas]
    counts.details["admin"] = admin
    counts.details["scenario"] = {k: v for k, v in asdict(scenario).items() if k != "peers"} | {
        "peers": asdict(peers_config) | {"bot_token": "***"}
    }
    counts.details["kills"] = [asdict(k) for k in run.kills]
    counts.details["start_seconds"] = {r.name: r.start_seconds for r in replicas}
    text = json.dumps(counts.as_dict(), indent=2, default=str)
    (run_dir / "counts.json").write_text(text)
    latest = ARTIFACTS / "chaos"
    latest.mkdir(parents=True, exist_ok=True)
    (latest / f"{scenario.name}.json").write_text(text)
    return counts
