"""From the stand-ins' record to the counts issue 13 asks for, and the verdict on them.

Everything is derived from what the peers saw (accepted sends, history rows, agent calls) and
what the harness did (acknowledged updates, kills); nothing is read from the gateway itself, so
the counts hold whatever the gateway believes about its own state.

Counts are per message (per marker): "duplicate replies" is the number of messages answered more
than once, "duplicate sends" the number of Telegram messages that repeated an answer already
accepted (one resent turn that answered eight messages is eight duplicate replies but one
duplicate send: one kill, one window), "outbound rows duplicated" the number of replies whose history row was written more
than once; the extra copies themselves are listed in `ChaosCounts.details`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.chaos.driver import ChatPlan, DriveResult

MARKER = re.compile(r"\bc(\d+)-m(\d+)\b")

#: Duplicate replies tolerated: Telegram's Bot API has no idempotency key, so a kill between
#: Telegram's answer and the gateway recording it can always cause one. Issue 13: at most 1 per 20.
KILLS_PER_TOLERATED_DUPLICATE = 20


@dataclass(frozen=True)
class Kill:
    replica: str
    tag: str  # the incarnation killed (the tag its calls to the peers carried)
    mono: float
    wall: float


@dataclass
class ChaosCounts:
    name: str
    db: str
    replicas: int
    seed: int
    updates: int = 0
    acknowledged: int = 0
    unacknowledged: int = 0
    deliveries: int = 0
    redeliveries: int = 0
    kills: int = 0
    replies: int = 0  # accepted sendMessage calls
    missing_replies: int = 0
    duplicate_replies: int = 0
    duplicate_sends: int = 0  # accepted sends repeating an answer (what the kill tolerance counts)
    order_violations: int = 0
    misrouted_replies: int = 0  # a marker answered in another chat
    unmarked_replies: int = 0  # sends naming no marker (e.g. the "busy" text)
    in_rows_duplicated: int = 0
    out_rows_duplicated: int = 0
    in_rows_missing: int = 0
    out_rows_missing: int = 0
    pacing_429: int = 0
    pacing_429_by_cause: dict[str, int] = field(default_factory=dict)
    injected_429: int = 0
    injected_502: int = 0
    agent_calls: int = 0
    agent_repeats: int = 0  # messages the agent was asked about more than once (not a failure)
    send_windows_ms: list[float] = field(default_factory=list)
    seconds_total: float = 0.0
    seconds_drive: float = 0.0
    seconds_settle: float = 0.0
    settled: bool = False
    log_dir: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def markers_in(text: Any) -> list[str]:
    """The markers a text names, in order, each once."""
    if not isinstance(text, str):
        return []
    seen: list[str] = []
    for match in MARKER.finditer(text):
        if match.group(0) not in seen:
            seen.append(match.group(0))
    return seen


def _chat_of(marker: str) -> int:
    match = MARKER.fullmatch(marker)
    assert match is not None
    return int(match.group(1))


def _position(marker: str) -> int:
    match = MARKER.fullmatch(marker)
    assert match is not None
    return int(match.group(2))


def _by_marker(items: Iterable[dict[str, Any]], text_key: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        for marker in markers_in(item.get(text_key)):
            found[marker].append(item)
    return found


def settled(acked: Iterable[str], report: dict[str, Any]) -> bool:
    """Every acknowledged message answered, and its inbound and outbound rows written."""
    replied = _by_marker(report["sends"], "text")
    rows = report["interactions"]
    ins = _by_marker((r for r in rows if r["direction"] == "in"), "message_text")
    outs = _by_marker((r for r in rows if r["direction"] == "out"), "message_text")
    return all(m in replied and m in ins and m in outs for m in acked)


def analyse(
    counts: ChaosCounts,
    plans: Sequence[ChatPlan],
    drive: DriveResult,
    kills: Sequence[Kill],
    report: dict[str, Any],
) -> ChaosCounts:
    """Fill `counts` in from the run's records (see the module docstring for what each means)."""
    chat_index = {p.chat_id: p.index for p in plans}
    acked = set(drive.acks)
    counts.updates = sum(len(p.updates) for p in plans)
    counts.acknowledged = len(acked)
    counts.unacknowledged = len(drive.unacknowledged)
    counts.deliveries = drive.deliveries
    counts.redeliveries = drive.deliveries - len(acked)
    counts.kills = len(kills)

    sends = sorted(report["sends"], key=lambda s: s["mono"])
    counts.replies = len(sends)
    replied = _by_marker(sends, "text")
    counts.unmarked_replies = sum(1 for s in sends if not markers_in(s["text"]))
    missing = sorted(acked - set(replied), key=_sort_key)
    counts.missing_replies = len(missing)
    duplicated = sorted((m for m, s in replied.items() if len(s) > 1), key=_sort_key)
    counts.duplicate_replies = len(duplicated)
    counts.duplicate_sends = _repeating_sends(sends)
    misrouted = sorted(
        (
            m
            for m, ss in replied.items()
            if any(chat_index.get(s["chat_id"]) != _chat_of(m) for s in ss)
        ),
        key=_sort_key,
    )
    counts.misrouted_replies = len(misrouted)

    order = _order_violations(sends, chat_index)
    counts.order_violations = len(order)

    rows = report["interactions"]
    ins = _by_marker((r for r in rows if r["direction"] == "in"), "message_text")
    outs = _by_marker((r for r in rows if r["direction"] == "out"), "message_text")
    in_dup = sorted((m for m, r in ins.items() if len(r) > 1), key=_sort_key)
    out_dup = sorted((m for m, r in outs.items() if len(r) > 1), key=_sort_key)
    in_missing = sorted(acked - set(ins), key=_sort_key)
    out_missing = sorted(set(replied) - set(outs), key=_sort_key)
    counts.in_rows_duplicated = len(in_dup)
    counts.out_rows_duplicated = len(out_dup)
    counts.in_rows_missing = len(in_missing)
    counts.out_rows_missing = len(out_missing)

    counts.pacing_429 = len(report["refusals"])
    counts.pacing_429_by_cause = dict(report["refusals_by_cause"])
    counts.injected_429 = int(report["injected_429"])
    counts.injected_502 = int(report["injected_502"])

    asked: dict[str, int] = defaultdict(int)
    for call in report["agent_calls"]:
        for text in call["texts"]:
            for marker in markers_in(text):
                asked[marker] += 1
    counts.agent_calls = len(report["agent_calls"])
    counts.agent_repeats = sum(1 for n in asked.values() if n > 1)

    windows = [_send_window(m, replied[m], kills) for m in duplicated]
    counts.send_windows_ms = [w["window_ms"] for w in windows if w["window_ms"] is not None]

    ack_of = drive.acks
    counts.details = {
        "unacknowledged": drive.unacknowledged,
        "missing_replies": [
            {
                "marker": m,
                "update_id": ack_of[m].update_id,
                "agent_calls": asked.get(m, 0),
                "in_rows": len(ins.get(m, [])),
            }
            for m in missing
        ],
        "duplicate_replies": windows,
        "misrouted_replies": misrouted,
        "order_violations": order,
        "in_rows_duplicated": [_rows_detail(m, ins[m], ack_of) for m in in_dup],
        "out_rows_duplicated": [_rows_detail(m, outs[m], ack_of) for m in out_dup],
        "in_rows_missing": in_missing,
        "out_rows_missing": out_missing,
        "pacing_429": report["refusals"][:50],
        "delivery_failures": drive.failures,
        "unmarked_replies": [s["text"] for s in sends if not markers_in(s["text"])][:20],
    }
    return counts


def _sort_key(marker: str) -> tuple[int, int]:
    return _chat_of(marker), _position(marker)


def _order_violations(
    sends: Sequence[dict[str, Any]], chat_index: dict[int, int]
) -> list[dict[str, Any]]:
    """Per chat, first replies in the order Telegram accepted them must answer rising markers."""
    violations: list[dict[str, Any]] = []
    seen: set[str] = set()
    highest: dict[int, str] = {}
    for send in sorted(sends, key=lambda s: (s["chat_id"], s["message_id"])):
        index = chat_index.get(send["chat_id"])
        for marker in markers_in(send["text"]):
            if marker in seen or _chat_of(marker) != index:
                continue
            seen.add(marker)
            top = highest.get(send["chat_id"])
            if top is not None and _position(marker) < _position(top):
                violations.append({"chat_id": send["chat_id"], "marker": marker, "after": top})
            else:
                highest[send["chat_id"]] = marker
    return violations


def _repeating_sends(sends: Sequence[dict[str, Any]]) -> int:
    """Accepted sends (in Telegram's order) naming a marker an earlier send already answered."""
    answered: set[str] = set()
    repeats = 0
    for send in sends:
        markers = markers_in(send["text"])
        if any(m in answered for m in markers):
            repeats += 1
        answered.update(markers)
    return repeats


def _send_window(
    marker: str, sends: Sequence[dict[str, Any]], kills: Sequence[Kill]
) -> dict[str, Any]:
    """How long after Telegram's first accepted answer the kill that explains the copy landed.

    The kill of the incarnation that made the first send (its tag) when there is one; its
    window can be slightly negative: the harness stamps a kill just before the signal, so an
    answer already on its way when the process died is recorded after the stamp (the process
    never read it, the Bot API's unavoidable window). Otherwise the first kill of any replica
    after that answer; None when no kill followed it at all (a copy no kill explains)."""
    first, *rest = sorted(sends, key=lambda s: s["mono"])
    own = [k for k in kills if k.tag == first["tag"]]
    after = [k for k in kills if k.mono >= first["mono"]]
    nearest = own[0] if own else min(after, key=lambda k: k.mono, default=None)
    return {
        "marker": marker,
        "copies": len(sends),
        "first_sender": first["tag"],
        "later_senders": [s["tag"] for s in rest],
        "gap_ms": [round((s["mono"] - first["mono"]) * 1000, 1) for s in rest],
        "killed": nearest.tag if nearest else None,
        "window_ms": round((nearest.mono - first["mono"]) * 1000, 1) if nearest else None,
    }


def _rows_detail(
    marker: str, rows: Sequence[dict[str, Any]], acks: dict[str, Any]
) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda r: r["mono"])
    ack = acks.get(marker)
    return {
        "marker": marker,
        "update_id": ack.update_id if ack else None,
        "copies": len(rows),
        "writers": [r["tag"] for r in ordered],
        "gap_ms": [round((r["mono"] - ordered[0]["mono"]) * 1000, 1) for r in ordered[1:]],
    }


def problems(c: ChaosCounts) -> list[str]:
    """What fails issue 13's pass criteria, one line each (empty: the run passes)."""
    allowed = c.kills // KILLS_PER_TOLERATED_DUPLICATE
    checks = [
        (c.unacknowledged == 0, f"{c.unacknowledged} updates never acknowledged"),
        (c.missing_replies == 0, f"{c.missing_replies} acknowledged messages never answered"),
        (
            c.duplicate_sends <= allowed,
            f"{c.duplicate_sends} replies sent again ({c.duplicate_replies} messages answered "
            f"more than once; allowed {allowed} resent replies for {c.kills} kills)",
        ),
        (c.order_violations == 0, f"{c.order_violations} replies out of per-chat order"),
        (c.misrouted_replies == 0, f"{c.misrouted_replies} replies sent to the wrong chat"),
        (
            c.in_rows_duplicated == 0,
            f"{c.in_rows_duplicated} inbound history rows written more than once",
        ),
        (
            c.out_rows_duplicated == 0,
            f"{c.out_rows_duplicated} outbound history rows written more than once",
        ),
        (c.in_rows_missing == 0, f"{c.in_rows_missing} inbound history rows missing"),
        (c.out_rows_missing == 0, f"{c.out_rows_missing} outbound history rows missing"),
        (
            c.pacing_429 == 0,
            f"{c.pacing_429} sends refused by the flood limits {c.pacing_429_by_cause}",
        ),
    ]
    return [message for ok, message in checks if not ok]


#: (column title, attribute) of the printed table.
COLUMNS: list[tuple[str, str]] = [
    ("run", "name"),
    ("kills", "kills"),
    ("acked", "acknowledged"),
    ("missing", "missing_replies"),
    ("dup reply", "duplicate_replies"),
    ("dup sends", "duplicate_sends"),
    ("order", "order_violations"),
    ("in 2x", "in_rows_duplicated"),
    ("out 2x", "out_rows_duplicated"),
    ("rows missing", "rows_missing"),
    ("pacing 429", "pacing_429"),
    ("inj 429/502", "injected"),
    ("windows ms", "windows"),
    ("seconds", "seconds_total"),
]


def _cell(c: ChaosCounts, attribute: str) -> str:
    if attribute == "acknowledged":
        return f"{c.acknowledged}/{c.updates}"
    if attribute == "rows_missing":
        return f"{c.in_rows_missing}+{c.out_rows_missing}"
    if attribute == "injected":
        return f"{c.injected_429}/{c.injected_502}"
    if attribute == "windows":
        return ",".join(f"{w:.0f}" for w in c.send_windows_ms) or "-"
    if attribute == "seconds_total":
        return f"{c.seconds_total:.0f}"
    return str(getattr(c, attribute))


def table(runs: Sequence[ChaosCounts]) -> str:
    """The counts of several runs as a Markdown table (it pastes into an issue as is)."""
    header = [title for title, _ in COLUMNS]
    lines = [[_cell(c, attr) for _, attr in COLUMNS] for c in runs]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *(fmt(row) for row in lines)])
