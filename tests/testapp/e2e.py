"""Tasks of the e2e tier: each fails, or kills its process, until the test cures it."""

from __future__ import annotations

import os
from pathlib import Path

from djtasks import task


class NotCuredYet(Exception):  # noqa: N818 - read as "the task is not cured yet"
    """The file a task waits for is not there yet."""


@task
def fail_until(path):
    """Fail until the file at ``path`` exists; then return "cured" (a retry can succeed)."""
    if not Path(path).exists():
        raise NotCuredYet(f"{path} does not exist yet")
    return "cured"


@task(acks_late=True, reject_on_worker_lost=True)
def poison_until(path, starts=None):
    """Kill the process running it until the file at ``path`` exists: a dead letter to replay.

    With ``starts``, each start appends a line to that file first (how often it ran).
    """
    if starts:
        with Path(starts).open("a") as fh:
            fh.write("start\n")
    if not Path(path).exists():
        os._exit(3)
    return "cured"


@task
def fail_saying_until(path, message):
    """Fail with ``message`` (markup, say) until the file at ``path`` exists; then "cured"."""
    if not Path(path).exists():
        raise NotCuredYet(message)
    return "cured"
