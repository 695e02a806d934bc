"""What the Agent Service adds to a model's time to first token, and the local model's speed.

    python -m bench.agent_overhead [--requests 200] [--local-requests 20] [--no-local]

In one run, against the same upstream, alternating request by request (so a busy machine
slows both sides alike):
- straight: `POST {upstream}/v1/chat/completions` with `"stream": true`, clock stopped at the
  first chunk that carries text;
- through: `POST {agent}/api/respond` with `"stream": true` to the agent service (openai
  backend) in front of that upstream, clock stopped at the first `event: delta`.
The upstream is the stand-in (tests/agent_service/openai_stub.py, answers at once, so the
difference is all ours), then, when the `local` extra is installed, llama.cpp's server with
SmolLM2-135M-Instruct. Prints p50/p95 of both and of the difference, then the local model's
generation speed (tokens per second after the first token) with llama's default thread
count and with every core. Requests are sequential: one in flight at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from agent_service.local import LlamaServer, missing_reason
from tests.agent_service.openai_stub import openai_stub_process
from tests.support.agent_service import agent_service_process
from tests.support.servers import ServerProcess

PROMPT = "Name three colours."


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"  {name:<28} p50 {_quantile(ms, 0.5):8.2f} ms   p95 {_quantile(ms, 0.95):8.2f} ms   (n={len(ms)})"


def ttft_straight(http: httpx.Client, base: str, model: str, max_tokens: int) -> float:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    with http.stream("POST", base + "/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            choices = json.loads(line[5:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                elapsed = time.perf_counter() - started
                response.close()
                return elapsed
    raise RuntimeError("the upstream sent no text")


def ttft_through(http: httpx.Client, agent: str) -> float:
    body = {"user": {"id": "bench"}, "text": PROMPT, "history": [], "stream": True}
    started = time.perf_counter()
    with http.stream("POST", agent + "/api/respond", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                elapsed = time.perf_counter() - started
                response.close()
                return elapsed
            if line.startswith("event: error"):
                raise RuntimeError("the agent service streamed an error")
    raise RuntimeError("the agent service sent no delta")


def compare(
    label: str,
    straight: Callable[[], float],
    through: Callable[[], float],
    requests: int,
    warmup: int,
) -> None:
    for _ in range(warmup):
        straight()
        through()
    a: list[float] = []
    b: list[float] = []
    for _ in range(requests):
        a.append(straight())
        b.append(through())
    print(f"time to first token, {label}:")
    print(_row("straight to the upstream", a))
    print(_row("through the agent service", b))
    print(_row("difference (pairwise)", [y - x for x, y in zip(a, b, strict=True)]))


@contextmanager
def agent_for(base: str, model: str, max_tokens: int) -> Iterator[ServerProcess]:
    with agent_service_process(
        AGENT_BACKEND="openai",
        OPENAI_BASE_URL=base,
        AGENT_MODEL=model,
        AGENT_MAX_TOKENS=str(max_tokens),
        AGENT_TEMPERATURE="0",
        AGENT_UPSTREAM_TIMEOUT="120",
        AGENT_TOOLS="false",
        AGENT_SYSTEM_PROMPT="",  # so both sides send the model the very same messages
        LOG_LEVEL="WARNING",
    ) as agent:
        yield agent


def tokens_per_second(base: str, tokens: int, runs: int) -> tuple[float, float, int]:
    """Median generation speed after the first token, median time to it, and tokens seen."""
    speeds, firsts, counts = [], [], []
    body: dict[str, Any] = {
        "model": "smollm2",
        "messages": [
            {"role": "user", "content": "Write a long story about a cat who sails to Vietnam."}
        ],
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0,
    }
    with httpx.Client(timeout=300) as http:
        for _ in range(runs):
            started = time.perf_counter()
            stamps: list[float] = []
            with http.stream("POST", base + "/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data:") and line.strip() != "data: [DONE]":
                        choices = json.loads(line[5:]).get("choices") or [{}]
                        if (choices[0].get("delta") or {}).get("content"):
                            stamps.append(time.perf_counter())
            if len(stamps) < 2:
                raise RuntimeError("the model produced fewer than two tokens")
            speeds.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
            firsts.append(stamps[0] - started)
            counts.append(len(stamps))
    return statistics.median(speeds), statistics.median(firsts), round(statistics.median(counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200, help="pairs against the stand-in")
    parser.add_argument("--local-requests", type=int, default=20, help="pairs against llama.cpp")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per speed run")
    parser.add_argument("--no-local", action="store_true", help="skip the local model")
    opts = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; requests are sequential\n")

    with (
        openai_stub_process() as stub,
        agent_for(stub.url + "/v1", "stub-model", 64) as agent,
        httpx.Client(timeout=30) as http,
    ):
        compare(
            "stand-in upstream (answers at once)",
            lambda: ttft_straight(http, stub.url + "/v1", "stub-model", 64),
            lambda: ttft_through(http, agent.url),
            opts.requests,
            warmup=20,
        )

    reason = missing_reason()
    if opts.no_local or reason is not None:
        print(f"\nlocal model skipped: {reason or '--no-local'}")
        return
    llama = LlamaServer(context=1024).start()
    try:
        llama.wait_ready(120)
        with agent_for(llama.base_url, "smollm2", 8) as agent, httpx.Client(timeout=120) as http:
            print()
            compare(
                "llama.cpp + SmolLM2-135M (8 tokens)",
                lambda: ttft_straight(http, llama.base_url, "smollm2", 8),
                lambda: ttft_through(http, agent.url),
                opts.local_requests,
                warmup=2,
            )
        speed, first, count = tokens_per_second(llama.base_url, opts.tokens, runs=3)
        print(f"\nlocal model speed, llama's default threads: {speed:.1f} tokens/s after the first")
        print(f"  (median of 3 runs of {count} tokens; first token after {first * 1000:.0f} ms)")
    finally:
        llama.stop()
    cores = os.cpu_count() or 1
    llama = LlamaServer(context=1024, threads=cores).start()
    try:
        llama.wait_ready(120)
        speed, first, count = tokens_per_second(llama.base_url, opts.tokens, runs=3)
        print(f"local model speed, {cores} threads: {speed:.1f} tokens/s after the first")
        print(f"  (median of 3 runs of {count} tokens; first token after {first * 1000:.0f} ms)")
    finally:
        llama.stop()


if __name__ == "__main__":
    main()
