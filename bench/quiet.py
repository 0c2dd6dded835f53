"""Wait for the machine to be idle before a measurement (a shared box skews every number)."""

from __future__ import annotations

import time
from pathlib import Path

WINDOW = 2.0  # seconds over which CPU use is measured


def busy_share(window: float = WINDOW) -> float:
    """Return the share (0-1) of all CPUs' time that was busy during ``window`` seconds."""
    before = _cpu_times()
    time.sleep(window)
    after = _cpu_times()
    total = sum(after) - sum(before)
    idle = (after[3] + after[4]) - (before[3] + before[4])  # idle + iowait
    return 1.0 - idle / total if total else 0.0


def wait_until_idle(threshold: float, limit: float) -> float | None:
    """Wait up to ``limit`` s until CPU use is under ``threshold``; return it, None if never.

    Where there is no /proc/stat (not Linux), nothing is waited for.
    """
    if not Path("/proc/stat").exists():
        return 0.0
    deadline = time.monotonic() + limit
    while True:
        share = busy_share()
        if share < threshold:
            return share
        if time.monotonic() > deadline:
            return None


def _cpu_times() -> list[int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return [int(value) for value in fields[:8]]
