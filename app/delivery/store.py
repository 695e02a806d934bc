"""SQL for the delivery engine: every statement the engine runs, in one place.

Each function takes a connection (the caller owns the transaction), so the engine decides what
commits together: a job and all its parts on enqueue; a part's result and the job's completion
on send. Statements are portable between SQLite and PostgreSQL; the only dialect switch is the
"insert unless present" form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.delivery.states import JobState, PartState
from app.delivery.tables import delivery_chats, delivery_jobs, delivery_parts
from app.storage.engine import now


@dataclass(frozen=True)
class PartRow:
    """A pending part as the sender needs it (text, extras and its retry bookkeeping)."""

    id: int
    job_id: int
    job_key: str
    chat_id: int
    seq: int
    parts_total: int
    text: str
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    reply_to_message_id: int | None
    edit_message_id: int | None
    attempts: int
    first_attempt_at: float | None
    next_attempt_at: float
    plain_fallback: bool
    #: Telegram Business: the connection the reply goes through (sent as the account owner).
    business_connection_id: str | None = None


def dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def loads(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def _insert_ignore(conn: AsyncConnection, table: Any, index: list[str]) -> Any:
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=index)
    return postgresql.insert(table).on_conflict_do_nothing(index_elements=index)


async def insert_job(
    conn: AsyncConnection, job_key: str, chat_id: int, parts_total: int, history: Any
) -> int | None:
    """Insert the job; None when `job_key` already exists (enqueue is then a no-op)."""
    stmt = (
        _insert_ignore(conn, delivery_jobs, ["job_key"])
        .values(
            job_key=job_key,
            chat_id=chat_id,
            state=JobState.PENDING,
            parts_total=parts_total,
            history=dumps(history),
            hook_attempts=0,
            hook_next_at=0.0,
            created_at=now(),
        )
        .returning(delivery_jobs.c.id)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def ensure_chat(conn: AsyncConnection, chat_id: int) -> bool:
    """Create the chat row if needed; True if the chat is marked unreachable."""
    await conn.execute(_insert_ignore(conn, delivery_chats, ["chat_id"]).values(chat_id=chat_id))
    row = await conn.execute(
        select(delivery_chats.c.unreachable_at).where(delivery_chats.c.chat_id == chat_id)
    )
    return row.scalar_one_or_none() is not None


async def insert_parts(
    conn: AsyncConnection,
    job_id: int,
    chat_id: int,
    parts: list[dict[str, Any]],
    state: PartState,
) -> None:
    t = now()
    rows = [
        {
            "job_id": job_id,
            "chat_id": chat_id,
            "seq": i,
            "text": p["text"],
            "parse_mode": p["parse_mode"],
            "reply_markup": dumps(p["reply_markup"]),
            "reply_to_message_id": p["reply_to_message_id"],
            "edit_message_id": p.get("edit_message_id"),
            "business_connection_id": p.get("business_connection_id"),
            "state": state,
            "attempts": 0,
            "next_attempt_at": 0.0,
            "plain_fallback": 0,
            "created_at": t,
        }
        for i, p in enumerate(parts)
    ]
    # One row at a time keeps ids in part order on every driver (the send order is by id).
    for row in rows:
        await conn.execute(insert(delivery_parts).values(**row))


async def set_job_state(
    conn: AsyncConnection, job_id: int, state: JobState, error: str | None
) -> None:
    await conn.execute(
        update(delivery_jobs)
        .where(delivery_jobs.c.id == job_id)
        .values(state=state, last_error=error, finished_at=now())
    )


# --- chat leases ---------------------------------------------------------------------------


async def claimable_chats(conn: AsyncConnection, limit: int, exclude: set[int]) -> list[int]:
    """Chats with pending parts whose lease is free or expired, oldest head first."""
    t = now()
    head = func.min(delivery_parts.c.id).label("head")
    stmt = (
        select(delivery_parts.c.chat_id, head)
        .join(delivery_chats, delivery_chats.c.chat_id == delivery_parts.c.chat_id)
        .where(
            delivery_parts.c.state == PartState.PENDING,
            or_(delivery_chats.c.lease_owner.is_(None), delivery_chats.c.lease_expires_at < t),
        )
        .group_by(delivery_parts.c.chat_id)
        .order_by(head)
        .limit(limit + len(exclude))
    )
    rows = (await conn.execute(stmt)).all()
    return [int(r.chat_id) for r in rows if int(r.chat_id) not in exclude][:limit]


async def claim_chats(
    conn: AsyncConnection, chat_ids: list[int], owner: str, lease: float
) -> list[int]:
    """Take the lease of each chat that is free, expired or already ours; return those we hold.

    A single UPDATE with the condition in its WHERE clause is atomic on both databases: on
    PostgreSQL a concurrent claimer blocks on the row lock and then re-checks the condition,
    so exactly one process wins.
    """
    if not chat_ids:
        return []
    t = now()
    await conn.execute(
        update(delivery_chats)
        .where(
            delivery_chats.c.chat_id.in_(chat_ids),
            or_(
                delivery_chats.c.lease_owner.is_(None),
                delivery_chats.c.lease_expires_at < t,
                delivery_chats.c.lease_owner == owner,
            ),
        )
        .values(lease_owner=owner, lease_expires_at=t + lease)
    )
    rows = await conn.execute(
        select(delivery_chats.c.chat_id).where(
            delivery_chats.c.chat_id.in_(chat_ids), delivery_chats.c.lease_owner == owner
        )
    )
    return [int(r) for r in rows.scalars()]


async def renew_chats(
    conn: AsyncConnection, chat_ids: list[int], owner: str, lease: float
) -> set[int]:
    """Extend our leases; return the chats we still hold (a lost one was taken over)."""
    if not chat_ids:
        return set()
    await conn.execute(
        update(delivery_chats)
        .where(delivery_chats.c.chat_id.in_(chat_ids), delivery_chats.c.lease_owner == owner)
        .values(lease_expires_at=now() + lease)
    )
    rows = await conn.execute(
        select(delivery_chats.c.chat_id).where(
            delivery_chats.c.chat_id.in_(chat_ids), delivery_chats.c.lease_owner == owner
        )
    )
    return {int(r) for r in rows.scalars()}


@dataclass(frozen=True)
class Pace:
    """A chat's pacing state as stored between leases (times are wall clock)."""

    tokens: float | None
    group_tokens: float | None
    at: float | None
    flood_until: float | None


async def release_chats(conn: AsyncConnection, chats: dict[int, Pace | None], owner: str) -> None:
    """Give up our leases, leaving each chat's pacing state for the next holder."""
    for chat_id, pace in chats.items():
        values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
        if pace is not None:
            values.update(
                pace_tokens=pace.tokens,
                group_tokens=pace.group_tokens,
                pace_at=pace.at,
                flood_until=pace.flood_until,
            )
        await conn.execute(
            update(delivery_chats)
            .where(delivery_chats.c.chat_id == chat_id, delivery_chats.c.lease_owner == owner)
            .values(**values)
        )


async def paces(conn: AsyncConnection, chat_ids: list[int]) -> dict[int, Pace]:
    if not chat_ids:
        return {}
    rows = await conn.execute(
        select(
            delivery_chats.c.chat_id,
            delivery_chats.c.pace_tokens,
            delivery_chats.c.group_tokens,
            delivery_chats.c.pace_at,
            delivery_chats.c.flood_until,
        ).where(delivery_chats.c.chat_id.in_(chat_ids), delivery_chats.c.pace_at.is_not(None))
    )
    return {
        int(r.chat_id): Pace(r.pace_tokens, r.group_tokens, r.pace_at, r.flood_until) for r in rows
    }


# --- parts ---------------------------------------------------------------------------------


def _part_select() -> Any:
    return select(
        delivery_parts,
        delivery_jobs.c.job_key,
        delivery_jobs.c.parts_total,
    ).join(delivery_jobs, delivery_jobs.c.id == delivery_parts.c.job_id)


def _part_row(r: Any) -> PartRow:
    return PartRow(
        id=int(r.id),
        job_id=int(r.job_id),
        job_key=str(r.job_key),
        chat_id=int(r.chat_id),
        seq=int(r.seq),
        parts_total=int(r.parts_total),
        text=str(r.text),
        parse_mode=r.parse_mode,
        reply_markup=loads(r.reply_markup),
        reply_to_message_id=r.reply_to_message_id,
        edit_message_id=r.edit_message_id,
        attempts=int(r.attempts),
        first_attempt_at=r.first_attempt_at,
        next_attempt_at=float(r.next_attempt_at),
        plain_fallback=bool(r.plain_fallback),
        business_connection_id=r.business_connection_id,
    )


async def heads(conn: AsyncConnection, chat_ids: list[int]) -> dict[int, PartRow]:
    """The oldest pending part of each chat (chats without one are absent)."""
    if not chat_ids:
        return {}
    first = (
        select(func.min(delivery_parts.c.id))
        .where(delivery_parts.c.state == PartState.PENDING, delivery_parts.c.chat_id.in_(chat_ids))
        .group_by(delivery_parts.c.chat_id)
    )
    rows = (await conn.execute(_part_select().where(delivery_parts.c.id.in_(first)))).all()
    return {int(r.chat_id): _part_row(r) for r in rows}


async def mark_sent(
    conn: AsyncConnection, part: PartRow, message_id: int | None, final_state: JobState
) -> tuple[bool, bool]:
    """Record a delivered part; (recorded now, job complete). See `mark_sent_ids`."""
    return await mark_sent_ids(conn, part.id, part.job_id, message_id, final_state)


async def mark_sent_ids(
    conn: AsyncConnection,
    part_id: int,
    job_id: int,
    message_id: int | None,
    final_state: JobState,
) -> tuple[bool, bool]:
    """Record a delivered part; (recorded now, job complete). Only a pending part is updated.

    Two statements, no read in between: this runs in the window where a crash would re-send
    the message, so it is kept as short as the database allows.
    """
    t = now()
    res = await conn.execute(
        update(delivery_parts)
        .where(delivery_parts.c.id == part_id, delivery_parts.c.state == PartState.PENDING)
        .values(state=PartState.SENT, message_id=message_id, sent_at=t, last_error=None)
    )
    if res.rowcount != 1:
        return False, False
    unsent = (
        select(delivery_parts.c.id)
        .where(delivery_parts.c.job_id == job_id, delivery_parts.c.state != PartState.SENT)
        .exists()
    )
    done = await conn.execute(
        update(delivery_jobs)
        .where(delivery_jobs.c.id == job_id, delivery_jobs.c.state == JobState.PENDING, ~unsent)
        .values(state=final_state, finished_at=t, last_error=None)
    )
    return True, done.rowcount == 1


async def schedule_retry(
    conn: AsyncConnection, part_id: int, attempts: int, first_at: float, next_at: float, error: str
) -> None:
    await conn.execute(
        update(delivery_parts)
        .where(delivery_parts.c.id == part_id)
        .values(
            attempts=attempts, first_attempt_at=first_at, next_attempt_at=next_at, last_error=error
        )
    )


async def clear_edit(conn: AsyncConnection, part_id: int) -> None:
    """The preview to write over is gone: send the part as a new message instead."""
    await conn.execute(
        update(delivery_parts).where(delivery_parts.c.id == part_id).values(edit_message_id=None)
    )


async def set_plain_fallback(conn: AsyncConnection, part_id: int) -> None:
    await conn.execute(
        update(delivery_parts).where(delivery_parts.c.id == part_id).values(plain_fallback=1)
    )


async def park_job_from(conn: AsyncConnection, part: PartRow, error: str) -> None:
    """Give up on `part` and the job's later parts (kept, listed, re-sendable)."""
    await conn.execute(
        update(delivery_parts)
        .where(delivery_parts.c.id == part.id)
        .values(state=PartState.PARKED, last_error=error)
    )
    await conn.execute(
        update(delivery_parts)
        .where(
            delivery_parts.c.job_id == part.job_id,
            delivery_parts.c.state == PartState.PENDING,
            delivery_parts.c.id != part.id,
        )
        .values(state=PartState.PARKED, last_error=f"held back with part {part.seq + 1}")
    )
    await set_job_state(conn, part.job_id, JobState.PARKED, error)


async def mark_chat_unreachable(conn: AsyncConnection, chat_id: int, reason: str) -> list[str]:
    """Mark the chat; fail its pending parts and jobs. Returns the job keys that changed."""
    await conn.execute(
        update(delivery_chats)
        .where(delivery_chats.c.chat_id == chat_id)
        .values(unreachable_at=now(), unreachable_reason=reason)
    )
    jobs = await conn.execute(
        select(delivery_jobs.c.id, delivery_jobs.c.job_key).where(
            delivery_jobs.c.chat_id == chat_id, delivery_jobs.c.state == JobState.PENDING
        )
    )
    rows = jobs.all()
    await conn.execute(
        update(delivery_parts)
        .where(delivery_parts.c.chat_id == chat_id, delivery_parts.c.state == PartState.PENDING)
        .values(state=PartState.FAILED, last_error=reason)
    )
    if rows:
        await conn.execute(
            update(delivery_jobs)
            .where(delivery_jobs.c.id.in_([r.id for r in rows]))
            .values(state=JobState.FAILED, last_error=reason, finished_at=now())
        )
    return [str(r.job_key) for r in rows]


async def clear_unreachable(conn: AsyncConnection, chat_id: int) -> bool:
    res = await conn.execute(
        update(delivery_chats)
        .where(delivery_chats.c.chat_id == chat_id, delivery_chats.c.unreachable_at.is_not(None))
        .values(unreachable_at=None, unreachable_reason=None)
    )
    return res.rowcount > 0


async def unreachable_chats(conn: AsyncConnection) -> set[int]:
    rows = await conn.execute(
        select(delivery_chats.c.chat_id).where(delivery_chats.c.unreachable_at.is_not(None))
    )
    return {int(r) for r in rows.scalars()}


async def requeue(
    conn: AsyncConnection, *, job_id: int | None = None, part_id: int | None = None
) -> tuple[int, int, str] | None:
    """Put parked/failed parts back in the queue: a whole job, or one part and the job's rest.

    Returns (chat_id, job_id, job_key), or None when there was nothing to resend.
    """
    if part_id is not None:
        row = (
            await conn.execute(
                select(delivery_parts.c.job_id, delivery_parts.c.seq).where(
                    delivery_parts.c.id == part_id
                )
            )
        ).first()
        if row is None:
            return None
        job_id, from_seq = int(row.job_id), int(row.seq)
    else:
        from_seq = 0
    job = (
        await conn.execute(
            select(delivery_jobs.c.chat_id, delivery_jobs.c.job_key).where(
                delivery_jobs.c.id == job_id
            )
        )
    ).first()
    if job is None:
        return None
    res = await conn.execute(
        update(delivery_parts)
        .where(
            delivery_parts.c.job_id == job_id,
            delivery_parts.c.seq >= from_seq,
            delivery_parts.c.state.in_((PartState.PARKED, PartState.FAILED)),
        )
        .values(
            state=PartState.PENDING,
            attempts=0,
            first_attempt_at=None,
            next_attempt_at=0.0,
            last_error=None,
        )
    )
    if res.rowcount == 0:
        return None
    await conn.execute(
        update(delivery_jobs)
        .where(delivery_jobs.c.id == job_id)
        .values(state=JobState.PENDING, last_error=None, finished_at=None)
    )
    # An operator re-sending to a chat marked unreachable means "try it again".
    await clear_unreachable(conn, int(job.chat_id))
    return int(job.chat_id), int(job_id or 0), str(job.job_key)


async def job_id_for(conn: AsyncConnection, job_key: str) -> int | None:
    row = await conn.execute(select(delivery_jobs.c.id).where(delivery_jobs.c.job_key == job_key))
    return row.scalar_one_or_none()


async def job_status(
    conn: AsyncConnection, job_key: str
) -> tuple[str, list[int], str | None] | None:
    job = (
        await conn.execute(
            select(delivery_jobs.c.id, delivery_jobs.c.state, delivery_jobs.c.last_error).where(
                delivery_jobs.c.job_key == job_key
            )
        )
    ).first()
    if job is None:
        return None
    ids = await conn.execute(
        select(delivery_parts.c.message_id)
        .where(delivery_parts.c.job_id == job.id, delivery_parts.c.message_id.is_not(None))
        .order_by(delivery_parts.c.seq)
    )
    return str(job.state), [int(m) for m in ids.scalars()], job.last_error


async def list_problem_parts(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(
            delivery_parts.c.id,
            delivery_parts.c.job_id,
            delivery_jobs.c.job_key,
            delivery_parts.c.chat_id,
            delivery_parts.c.seq,
            delivery_jobs.c.parts_total,
            delivery_parts.c.state,
            delivery_parts.c.attempts,
            delivery_parts.c.last_error,
            delivery_parts.c.created_at,
            delivery_parts.c.text,
        )
        .join(delivery_jobs, delivery_jobs.c.id == delivery_parts.c.job_id)
        .where(delivery_parts.c.state.in_((PartState.PARKED, PartState.FAILED)))
        .order_by(delivery_parts.c.id)
        .limit(limit)
    )
    out = []
    for r in rows:
        out.append(
            {
                "part_id": int(r.id),
                "job_id": int(r.job_id),
                "job_key": r.job_key,
                "chat_id": int(r.chat_id),
                "part": f"{int(r.seq) + 1}/{int(r.parts_total)}",
                "state": r.state,
                "attempts": int(r.attempts),
                "last_error": r.last_error,
                "created_at": r.created_at,
                "preview": str(r.text)[:80],
            }
        )
    return out


async def count_pending(conn: AsyncConnection) -> int:
    res = await conn.execute(
        select(func.count())
        .select_from(delivery_parts)
        .where(delivery_parts.c.state == PartState.PENDING)
    )
    return int(res.scalar_one())


# --- the on_delivered hook ---------------------------------------------------------------------


async def due_hooks(conn: AsyncConnection, limit: int) -> list[int]:
    t = now()
    rows = await conn.execute(
        select(delivery_jobs.c.id)
        .where(
            delivery_jobs.c.state == JobState.SENT,
            delivery_jobs.c.hook_next_at <= t,
            or_(delivery_jobs.c.lease_owner.is_(None), delivery_jobs.c.lease_expires_at < t),
        )
        .order_by(delivery_jobs.c.id)
        .limit(limit)
    )
    return [int(r) for r in rows.scalars()]


async def claim_hook(
    conn: AsyncConnection, job_id: int, owner: str, lease: float
) -> dict[str, Any] | None:
    """Lease a `sent` job for its hook; the job's data, or None if someone holds it already.

    Only a free or expired lease can be taken, by anyone, this process included: a second
    claim while a hook runs (the periodic sweep finding a job whose hook was just started) must
    fail, or the history row is written twice. `maybe_done` in the result says that an earlier
    run may have written the row before it died or failed (its lease expired, or it failed
    after the write), so the hook must look before it writes.
    """
    t = now()
    before = (
        await conn.execute(
            select(delivery_jobs.c.lease_owner, delivery_jobs.c.hook_attempts).where(
                delivery_jobs.c.id == job_id
            )
        )
    ).first()
    if before is None:
        return None
    res = await conn.execute(
        update(delivery_jobs)
        .where(
            delivery_jobs.c.id == job_id,
            delivery_jobs.c.state == JobState.SENT,
            or_(delivery_jobs.c.lease_owner.is_(None), delivery_jobs.c.lease_expires_at < t),
        )
        .values(lease_owner=owner, lease_expires_at=t + lease)
    )
    if res.rowcount != 1:
        return None
    job = (await conn.execute(select(delivery_jobs).where(delivery_jobs.c.id == job_id))).first()
    assert job is not None
    parts = await conn.execute(
        select(delivery_parts.c.message_id, delivery_parts.c.text, delivery_parts.c.sent_at)
        .where(delivery_parts.c.job_id == job_id)
        .order_by(delivery_parts.c.seq)
    )
    prows = parts.all()
    return {
        "job_id": int(job.id),
        "job_key": str(job.job_key),
        "chat_id": int(job.chat_id),
        "history": loads(job.history),
        "message_ids": [int(p.message_id) for p in prows if p.message_id is not None],
        "texts": [str(p.text) for p in prows],
        "sent_at": max((float(p.sent_at) for p in prows if p.sent_at is not None), default=now()),
        "hook_attempts": int(job.hook_attempts),
        "maybe_done": before.lease_owner is not None or int(before.hook_attempts) > 0,
    }


async def finish_hook(conn: AsyncConnection, job_id: int, owner: str) -> None:
    await conn.execute(
        update(delivery_jobs)
        .where(and_(delivery_jobs.c.id == job_id, delivery_jobs.c.state == JobState.SENT))
        .values(state=JobState.RECORDED, lease_owner=None, lease_expires_at=None)
    )


async def fail_hook(
    conn: AsyncConnection, job_id: int, attempts: int, next_at: float, error: str
) -> None:
    await conn.execute(
        update(delivery_jobs)
        .where(delivery_jobs.c.id == job_id)
        .values(
            hook_attempts=attempts,
            hook_next_at=next_at,
            last_error=error,
            lease_owner=None,
            lease_expires_at=None,
        )
    )


async def prune_finished(conn: AsyncConnection, older_than: float) -> int:
    """Delete delivered jobs (and their parts) finished before `older_than` (epoch seconds).

    Only `recorded` and `skipped` jobs go: parked and failed ones stay for an operator, and
    `sent` ones still owe their history hook. Returns the number of jobs deleted.
    """
    old_jobs = (
        select(delivery_jobs.c.id)
        .where(
            delivery_jobs.c.state.in_((JobState.RECORDED, JobState.SKIPPED)),
            delivery_jobs.c.finished_at < older_than,
        )
        .limit(5000)
    )
    ids = [int(i) for i in (await conn.execute(old_jobs)).scalars()]
    if not ids:
        return 0
    await conn.execute(delete(delivery_parts).where(delivery_parts.c.job_id.in_(ids)))
    await conn.execute(delete(delivery_jobs).where(delivery_jobs.c.id.in_(ids)))
    return len(ids)
