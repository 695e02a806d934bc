"""Print every chaos run's counts at the end of the session, passed or failed.

A chaos test that passes says little by itself ("0 duplicates" over how many kills, in how long?),
so the counts always show in pytest's output; each run's JSON is also in
``test-artifacts/chaos/<name>.json`` and, with its logs, under ``test-artifacts/logs/chaos-*``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos.analysis import ChaosCounts, table

_runs: list[ChaosCounts] = []


@pytest.fixture
def chaos_record() -> Callable[[ChaosCounts], None]:
    """Call with a run's counts to have them printed in the terminal summary."""
    return _runs.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _runs:
        return
    terminalreporter.write_sep("=", "chaos counts (issue 13)")
    terminalreporter.write_line(table(_runs))
    for c in _runs:
        windows = ", ".join(f"{w:.1f}" for w in c.send_windows_ms) or "none"
        terminalreporter.write_line(
            f"{c.name}: seed {c.seed}, {c.replicas} replica(s) on {c.db}; drive "
            f"{c.seconds_drive:.0f} s, settle {c.seconds_settle:.0f} s; redeliveries "
            f"{c.redeliveries}; pacing 429 by cause {c.pacing_429_by_cause or '{}'}; "
            f"duplicate send windows (ms) {windows}; logs {c.log_dir}"
        )
