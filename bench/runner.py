"""Subprocesses of a run: workers (waited for until ready) and client steps (bench layer).

Each worker runs in a session of its own, so that stopping it reaches its pool children
and nothing else. Its stderr goes to a log file, which is read for the ready line; a
worker that exits first fails the run with the end of its log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.systems import ROOT

READY = re.compile(r" ready\.\s*$", re.MULTILINE)
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class RunError(Exception):
    """A worker or a client step failed; the message says which and why."""


class Worker:
    """A worker subprocess started from ``argv`` with ``env``, logging to ``log_path``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # closed by stop()
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Block until the worker logs its ready line; return the seconds it took."""
        started = time.monotonic()
        while not READY.search(self.log_path.read_text(errors="replace")):
            if not self.alive():
                raise RunError(f"worker exited ({self.process.returncode}) before it was ready:\n"
                               + self.tail())
            if time.monotonic() - started > timeout:
                raise RunError(f"worker not ready after {timeout:.0f} s:\n" + self.tail())
            time.sleep(0.05)
        return time.monotonic() - started

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); SIGKILL the whole session if it takes too long."""
        try:
            if self.alive():
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
            elif _group_exists(self.process.pid):
                os.killpg(self.process.pid, signal.SIGKILL)  # pool children left behind
        finally:
            self._log.close()


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run_client(args: list[str], env: dict[str, str], worker: Worker | None = None,
               timeout: float = 1800.0) -> dict:
    """Run ``python -m bench.client ARGS``; return its JSON outcome.

    While it runs, ``worker`` must stay alive: a worker that dies fails the step at once
    instead of leaving the client waiting for tasks that nobody runs.
    """
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.client", *args], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=out,
        )
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None:
                if worker is not None and not worker.alive():
                    raise RunError(f"worker died during {args[1]} ({worker.process.returncode}):\n"
                                   + worker.tail())
                if time.monotonic() > deadline:
                    raise RunError(f"client step {args[1]} still running after {timeout:.0f} s")
                time.sleep(0.1)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        output = out.read()
    if process.returncode != 0:
        raise RunError(f"client step {' '.join(args[:2])} failed ({process.returncode})")
    return json.loads(output.strip().splitlines()[-1])
