"""What ``make demo`` leaves running: the demo's user, and its worker, beat and runserver.

Each process runs in a session of its own, so a Ctrl-C in the terminal reaches the demo
command alone, which then stops each one the way it stops cleanly (the worker and beat on
SIGTERM, runserver on SIGINT) and waits for it: nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from django.contrib.auth import get_user_model

MANAGE = Path(__file__).resolve().parents[2] / "manage.py"
DEMO_USER = ("demo", "demo")

Write = Callable[[str], None]


def ensure_demo_user() -> bool:
    """Create the ``demo`` superuser (password ``demo``) unless it exists; True if created."""
    username, password = DEMO_USER
    users = get_user_model().objects
    if users.filter(username=username).exists():
        return False
    users.create_superuser(username, "", password)
    return True


class Child:
    """A ``manage.py`` subprocess of the demo, its log lines echoed with its name in front."""

    def __init__(self, name: str, argv: list[str], stop_signal: int = signal.SIGTERM) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.process = subprocess.Popen(
            [sys.executable, str(MANAGE), *argv], stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)

    def wait_for_line(self, suffix: str, write: Write) -> None:
        """Echo the log until a line ends with ``suffix``; then echo the rest in the background."""
        for line in self.process.stderr:
            write(line.rstrip())
            if line.rstrip().endswith(suffix):
                self.echo_in_background(write)
                return
        raise RuntimeError(f"the {self.name} exited before it was ready")

    def echo_in_background(self, write: Write) -> None:
        def echo() -> None:
            for line in self.process.stderr:
                write(f"  {self.name} | {line.rstrip()}")

        threading.Thread(target=echo, daemon=True).start()

    def stop(self, timeout: float = 60.0) -> int:
        """Ask it to stop, wait for it (killing it past ``timeout``); return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def wait_for_http(url: str, child: Child, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers; fail if the server exits first (its port taken, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if child.process.poll() is not None:
                raise RuntimeError(f"runserver exited ({child.process.returncode}) before "
                                   f"answering {url}") from None
            time.sleep(0.2)
    raise RuntimeError(f"runserver did not answer {url} within {timeout:.0f}s")


def wait_for_interrupt(children: list[Child]) -> None:
    """Return on Ctrl-C or SIGTERM, or when one of ``children`` exits by itself."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            if any(child.process.poll() is not None for child in children):
                return
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
