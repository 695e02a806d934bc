"""Start real service processes on 127.0.0.1 for integration and end-to-end tests.

Every test that needs "the real thing" (a uvicorn process speaking HTTP) goes through
`ServerProcess`, so that ports, readiness polling, log capture and clean shutdown are done
one way: poll with a deadline instead of sleeping, and keep the process output in a file
that is printed when start-up fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    predicate: object, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> None:
    """Poll `predicate()` until it is truthy or `timeout` seconds pass (then AssertionError)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # the condition may raise while the system settles
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}: {last_exc!r}"
    )


class ServerProcess:
    """A uvicorn (or any) subprocess bound to a free port on 127.0.0.1.

    `app` is an import string such as ``"users_service.main:app"``; `env` is merged over the
    current environment. `ready_path` is polled until it answers 2xx. Use as a context manager,
    or call `start()` / `stop()` / `kill()` yourself (kill -9 tests do).
    """

    def __init__(
        self,
        app: str,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        ready_path: str = "/health",
        log_dir: Path | None = None,
        name: str | None = None,
        extra_args: tuple[str, ...] = (),
        argv: list[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.env = dict(env or {})
        self.port = port or free_port()
        self.ready_path = ready_path
        self.name = name or app.split(":")[0].replace(".", "_")
        self.log_dir = log_dir or Path(os.environ.get("TEST_LOG_DIR", "/tmp"))
        self.extra_args = extra_args
        self.argv = argv
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.log_dir / f"{self.name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        argv = self.argv or [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            *self.extra_args,
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during start-up:\n{self.output()}"
                )
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {self.ready_timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it does not exit in `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """kill -9: no shutdown code runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
