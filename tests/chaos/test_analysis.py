"""The chaos counts themselves, on a hand-made record: a harness that cannot see a duplicate
would pass every gateway. Fast (no processes), so it runs with the unit tests."""

from __future__ import annotations

import random
from typing import Any

from tests.chaos.analysis import ChaosCounts, Kill, analyse, markers_in, problems, settled, table
from tests.chaos.driver import Ack, DriveResult, plan_updates


def _send(chat_id: int, text: str, message_id: int, mono: float, tag: str = "gw0-1") -> Any:
    return {"chat_id": chat_id, "text": text, "message_id": message_id, "mono": mono, "tag": tag}


def _row(direction: str, text: str, mono: float, tag: str = "gw0-1") -> Any:
    return {"direction": direction, "message_text": text, "mono": mono, "tag": tag}


def _report(sends: list[Any], rows: list[Any], refusals: list[Any] | None = None) -> Any:
    refusals = refusals or []
    return {
        "sends": sends,
        "interactions": rows,
        "refusals": refusals,
        "refusals_by_cause": {"bot": len(refusals)} if refusals else {},
        "injected_429": 2,
        "injected_502": 1,
        "agent_calls": [{"texts": [s["text"][4:]]} for s in sends],
    }


def test_plan_has_unique_markers_and_rising_update_ids() -> None:
    plans = plan_updates(updates=45, chats=10, groups=2, callbacks=3, rng=random.Random(1))
    updates = [u for p in plans for u in p.updates]
    assert len(updates) == 45
    assert len({u.marker for u in updates}) == 45
    assert len({u.update_id for u in updates}) == 45
    assert all(p.chat_id < 0 for p in plans[:2]) and all(p.chat_id > 0 for p in plans[2:])
    assert sum(u.kind == "callback_query" for u in updates) == 3
    for plan in plans:
        ids = [u.update_id for u in plan.updates]
        assert ids == sorted(ids)
        assert all(markers_in(u.body.decode()) == [u.marker] for u in plan.updates)


def test_counts_catch_every_kind_of_failure() -> None:
    plans = plan_updates(updates=8, chats=2, groups=0, callbacks=0, rng=random.Random(2))
    a, b = plans[0].chat_id, plans[1].chat_id
    drive = DriveResult()
    for plan in plans:
        for u in plan.updates:
            drive.acks[u.marker] = Ack(u.marker, u.update_id, u.chat_id, 1, 0.0, 0.0, "x")
    sends = [
        _send(a, "re: hello c0-m1", 1, 1.0),
        _send(a, "re: hello c0-m3", 2, 2.0),  # c0-m2 comes after c0-m3: order
        _send(a, "re: hello c0-m2", 3, 3.0),
        _send(a, "re: hello c0-m3", 4, 9.0, tag="gw0-2"),  # a second copy of c0-m3
        _send(b, "re: hello c1-m1", 1, 1.5),
        _send(b, "Agent busy", 2, 1.6),  # names no message
        _send(b, "re: hello c1-m3 | hello c1-m4", 3, 4.0),  # one turn answering two
        # c0-m4 and c1-m2 are never answered
    ]
    rows = [_row("in", f"hello c{c}-m{m}", 0.5) for c in (0, 1) for m in (1, 2, 3, 4)]
    rows.append(_row("in", "hello c1-m1", 0.7))  # inbound written twice
    rows += [_row("out", s["text"], s["mono"] + 0.01) for s in sends[:3]]
    rows.append(_row("out", "re: hello c0-m1", 1.2))  # outbound written twice
    kills = [Kill("gw0", "gw0-1", 2.0305, 0.0)]
    report = _report(sends, rows, refusals=[{"cause": "bot", "chat_id": a, "mono": 1.0}])

    c = analyse(ChaosCounts("t", "sqlite", 1, 0), plans, drive, kills, report)

    assert (c.acknowledged, c.kills, c.replies) == (8, 1, 7)
    assert [d["marker"] for d in c.details["missing_replies"]] == ["c0-m4", "c1-m2"]
    assert c.duplicate_replies == 1 and c.duplicate_sends == 1
    (window,) = c.details["duplicate_replies"]
    assert (window["marker"], window["killed"], window["window_ms"]) == ("c0-m3", "gw0-1", 30.5)
    assert c.order_violations == 1 and c.details["order_violations"][0]["marker"] == "c0-m2"
    assert c.unmarked_replies == 1
    assert c.in_rows_duplicated == 1 and c.out_rows_duplicated == 1
    assert c.in_rows_missing == 0
    assert c.details["out_rows_missing"] == ["c1-m1", "c1-m3", "c1-m4"]
    assert (c.pacing_429, c.injected_429, c.injected_502) == (1, 2, 1)
    assert not settled(drive.acks, report)
    failed = problems(c)
    assert len(failed) == 7, failed  # missing, duplicate, order, in 2x, out 2x, out missing, 429
    assert "| t " in table([c])


def test_a_clean_run_passes_and_one_duplicate_per_20_kills_is_tolerated() -> None:
    plans = plan_updates(updates=2, chats=1, groups=0, callbacks=0, rng=random.Random(3))
    chat = plans[0].chat_id
    drive = DriveResult()
    for u in plans[0].updates:
        drive.acks[u.marker] = Ack(u.marker, u.update_id, u.chat_id, 1, 0.0, 0.0, "x")
    sends = [_send(chat, "re: hello c0-m1", 1, 1.0), _send(chat, "re: hello c0-m2", 2, 2.0)]
    rows = [_row("in", "hello c0-m1", 0.1), _row("in", "hello c0-m2", 0.2)]
    rows += [_row("out", s["text"], 3.0) for s in sends]
    report = _report(sends, rows)
    clean = analyse(ChaosCounts("ok", "sqlite", 1, 0), plans, drive, [], report)
    assert problems(clean) == [] and settled(drive.acks, report)

    report["sends"].append(_send(chat, "re: hello c0-m2", 3, 2.5, tag="gw0-2"))
    kills = [Kill("gw0", "gw0-1", 2.01 + i, 0.0) for i in range(20)]
    once = analyse(ChaosCounts("dup", "sqlite", 1, 0), plans, drive, kills, report)
    assert once.duplicate_replies == 1 and problems(once) == []
    no_kills = analyse(ChaosCounts("dup0", "sqlite", 1, 0), plans, drive, [], report)
    assert problems(no_kills) == [
        "1 replies sent again (1 messages answered more than once; allowed 0 resent replies "
        "for 0 kills)"
    ]


def test_a_resent_turn_is_one_duplicate_send_however_many_messages_it_answers() -> None:
    """A turn answering a burst is one Telegram message: resent after a kill in the Bot API's
    window, it repeats every message of the burst, but it is one copy, caused by one kill."""
    plans = plan_updates(updates=3, chats=1, groups=0, callbacks=0, rng=random.Random(4))
    chat = plans[0].chat_id
    drive = DriveResult()
    for u in plans[0].updates:
        drive.acks[u.marker] = Ack(u.marker, u.update_id, u.chat_id, 1, 0.0, 0.0, "x")
    burst = "re: hello c0-m1 | hello c0-m2 | hello c0-m3"
    sends = [_send(chat, burst, 1, 1.0), _send(chat, burst, 2, 11.0, tag="gw0-2")]
    rows = [_row("in", f"hello c0-m{m}", 0.1) for m in (1, 2, 3)]
    rows.append(_row("out", burst, 11.1, tag="gw0-2"))
    kills = [Kill("gw0", "gw0-1", 1.0 + i, 0.0) for i in range(20)]
    c = analyse(ChaosCounts("turn", "sqlite", 1, 0), plans, drive, kills, _report(sends, rows))
    assert (c.duplicate_replies, c.duplicate_sends) == (3, 1)
    assert problems(c) == []

    sends.append(_send(chat, "re: hello c0-m3", 3, 12.0, tag="gw0-3"))  # a second resend
    c = analyse(ChaosCounts("turn2", "sqlite", 1, 0), plans, drive, kills, _report(sends, rows))
    assert c.duplicate_sends == 2
    assert problems(c) == [
        "2 replies sent again (3 messages answered more than once; allowed 1 resent replies "
        "for 20 kills)"
    ]
