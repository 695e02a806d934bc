"""Streamed replies: time to first visible text vs the complete reply, and Bot API calls spent.

    python -m bench.streaming [--replies 5] [--chars 2000] [--word-delay 0.01]

Real processes (sandbox, User Service, agent stand-in streaming word by word, gateway), one
run, each mode in turn on the same stack: `STREAM_MODE=off` (the baseline: one message when the
reply is complete), `edit` and `draft`. For each reply: from the user's message (the sandbox
receiving it) to the first text the user can see (the first sendMessage / sendMessageDraft
the sandbox accepted for the chat) and to the complete text on screen, and the Bot API calls
the gateway made for the chat (messages, edits, drafts, chat actions).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.stack import Stack, running_stack
from tests.support.servers import wait_until

VISIBLE = ("sendMessage", "sendMessageDraft")
COUNTED = ("sendMessage", "editMessageText", "sendMessageDraft", "sendChatAction")


def one_reply(stack: Stack, n: int, words: int) -> dict[str, Any]:
    uid = stack.new_user(f"Bench{n}")
    text = f"bench {n}"
    expected = f"Agent: {text}" + "".join(f" w{i}" for i in range(1, words + 1))
    started = time.time()
    stack.ctl.send_text(uid, text)

    def complete() -> bool:
        messages = stack.ctl.bot_messages(uid)
        return bool(messages) and messages[-1].get("text") == expected

    wait_until(complete, timeout=120, interval=0.01, what="the complete reply")
    done = time.time()
    calls = [c for c in stack.ctl.calls() if c["params"].get("chat_id") == uid]
    shown = [c["time"] for c in calls if c["method"] in VISIBLE and c["status"] == 200]
    counts = {m: sum(1 for c in calls if c["method"] == m) for m in COUNTED}
    return {"first": min(shown) - started, "complete": done - started, "calls": counts}


def run_mode(stack: Stack, replies: int, words: int) -> list[dict[str, Any]]:
    return [one_reply(stack, n, words) for n in range(replies)]


def report(mode: str, results: list[dict[str, Any]]) -> str:
    first = statistics.median(r["first"] for r in results) * 1000
    complete = statistics.median(r["complete"] for r in results) * 1000
    calls = {m: statistics.mean(r["calls"][m] for r in results) for m in COUNTED}
    spent = " ".join(f"{m}={v:.1f}" for m, v in calls.items())
    return (
        f"  {mode:<5} first text p50 {first:7.0f} ms   complete p50 {complete:7.0f} ms"
        f"   calls/reply: {spent}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming")
    parser.add_argument("--replies", type=int, default=5)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--word-delay", type=float, default=0.01)
    args = parser.parse_args()
    words = max(1, (args.chars - 20) // 5)  # " wNNN" is about five characters
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_stack(Path(tmp), STREAM_MODE="off", AGENT_TIMEOUT="60") as s,
    ):
        s.agent_control("stream", delay=args.word_delay, words=words)
        print(
            f"streamed reply of ~{args.chars} characters ({words} pieces, one every"
            f" {args.word_delay * 1000:.0f} ms), {args.replies} replies per mode:"
        )
        lines = [report("off", run_mode(s, args.replies, words))]
        for mode in ("edit", "draft"):
            with s.other_gateway(f"bench-{mode}", STREAM_MODE=mode):
                lines.append(report(mode, run_mode(s, args.replies, words)))
        print("\n".join(lines))


if __name__ == "__main__":
    main()
