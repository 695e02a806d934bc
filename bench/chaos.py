"""Chaos run from the command line: real gateways under kill -9, and the counts (issue 13).

    python -m bench.chaos --db sqlite --replicas 1 --kills 20 --updates 400
    python -m bench.chaos --db postgres --replicas 3 --kills 20

Runs one scenario of `tests.chaos.harness` (the same code as the CI test) and prints the counts
table, what fails the issue's pass criteria, and where the logs are. Exit status 1 when a
criterion fails, so a loop in a shell can stop at the first bad run. ``CHAOS_*`` environment
variables apply as in the tests (``CHAOS_SHARED_PACING=0``, peers' limits and fault rates); the
options here win over them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from tests.chaos.analysis import problems, table
from tests.chaos.harness import Scenario, run_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--replicas", type=int, default=None, help="default: 1 on SQLite, 3 on PostgreSQL"
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--chats", type=int, default=40)
    parser.add_argument("--rate", type=float, default=30.0, help="new updates per second")
    parser.add_argument("--seed", type=int, default=0, help="0: a random seed (printed)")
    parser.add_argument("--lease", type=float, default=10.0, help="LEASE_SECONDS of the gateways")
    parser.add_argument("--name", default=None, help="run name (log folder, JSON file)")
    parser.add_argument("--details", action="store_true", help="print the offending markers")
    args = parser.parse_args(argv)

    replicas = args.replicas or (3 if args.db == "postgres" else 1)
    if args.db == "postgres":
        from tests.support.pg import postgres_available

        reason = postgres_available()
        if reason is not None:
            print(reason, file=sys.stderr)
            return 2
    name = args.name or f"bench-{args.db}-{replicas}x-{args.kills}k"
    scenario = Scenario.from_env(name, db=args.db, replicas=replicas)
    scenario = replace(
        scenario,
        kills=args.kills,
        updates=args.updates,
        chats=args.chats,
        rate=args.rate,
        seed=args.seed or scenario.seed,
        lease_seconds=args.lease,
        settle_timeout=max(scenario.settle_timeout, 4 * args.lease),
    )
    print(
        f"chaos: {scenario.db}, {scenario.replicas} replica(s), {scenario.updates} updates over "
        f"{scenario.chats} chats at {scenario.rate:g}/s, {scenario.kills} kills, "
        f"LEASE_SECONDS={scenario.lease_seconds:g}, seed {scenario.seed}",
        flush=True,
    )
    counts = run_scenario(scenario)
    print(table([counts]))
    print(
        f"\ndrive {counts.seconds_drive:.1f} s, settle {counts.seconds_settle:.1f} s "
        f"(settled: {counts.settled}); pacing 429 by cause {counts.pacing_429_by_cause}; "
        f"agent calls {counts.agent_calls} (messages asked twice: {counts.agent_repeats}); "
        f"replies naming no message: {counts.unmarked_replies}"
    )
    if args.details:
        shown = {
            k: v
            for k, v in counts.details.items()
            if k not in ("admin", "scenario", "kills", "pacing_429") and v
        }
        print(json.dumps(shown, indent=1, default=str))
    failed = problems(counts)
    for line in failed:
        print(f"FAIL: {line}")
    print(f"logs: {counts.log_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
