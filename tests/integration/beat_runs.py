"""What beat tests read: runs recorded by the stamp task, sends logged by the beats."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from djtasks.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from tests.integration.conftest import wait_until

SENT = r"Scheduler: Sending due task"


def runs(path: Path) -> list[float]:
    """The execution times recorded by the stamp task, in order."""
    if not path.exists():
        return []
    return sorted(float(line.split()[0]) for line in path.read_text().splitlines() if line)


def add_entry(broker, queue, path, name="every-second", **schedule) -> PeriodicTask:
    db = broker.database
    if "crontab" in schedule:
        crontab = CrontabSchedule.objects.using(db).create(**schedule["crontab"])
        when = {"crontab": crontab}
    else:
        interval, _ = IntervalSchedule.objects.using(db).get_or_create(every=1, period="seconds")
        when = {"interval": interval}
    return PeriodicTask.objects.using(db).create(
        name=name, task="tests.testapp.tasks.stamp", args=[str(path)], queue=queue, **when)


def send_times(*beats) -> list[float]:
    """When the beats logged each send, in order (the log's own clock, to the millisecond)."""
    times = []
    for beat in beats:
        for line in beat.lines:
            if re.search(SENT, line):
                stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
                times.append(stamp.timestamp())
    return sorted(times)


def each_run_sent_once(stamps: Path, *beats, left_in_queue: Callable[[], int] = lambda: 0) -> None:
    """No run was sent twice (sends of a 1 s schedule are ~1 s apart) and every send ran once.

    ``left_in_queue``: how many sends wait in the queue, unrun, because the worker that would
    run them was stopped (a send between its stop signal and its warm shutdown).
    """
    sends = send_times(*beats)
    gaps = [b - a for a, b in pairwise(sends)]
    assert all(gap > 0.5 for gap in gaps), f"a run was sent twice: gaps between sends {gaps}"
    wait_until(lambda: len(runs(stamps)) + left_in_queue() >= len(sends), timeout=20,
               message="every send ran or waits in its queue")
    assert len(runs(stamps)) + left_in_queue() == len(sends)
