"""Rate limits on real workers over every broker, set at run time by the control command.

Per task and per worker: the limited tasks go to a queue only the first worker consumes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.integration.conftest import DATABASES, WorkerProcess, run_command, start_worker, wait_until
from tests.integration.test_control import rebind_mailboxes
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

#: 30/m: a token every 2 s, so limited starts are at least 2 s apart (1.8 s leaves room
#: for the time a pool process takes to begin the task, which can differ by a little).
RATE, SPACING = "30/m", 1.8


@pytest.fixture(scope="module")
def names() -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"rate1-{tag}@localhost", f"rate2-{tag}@localhost"]


@pytest.fixture(scope="module")
def workers(broker, queue_name, names, django_db_setup) -> Iterator[list[WorkerProcess]]:
    # Prefetch 1 per slot (a window of 2): held messages must widen it for others to pass.
    started = [start_worker(broker, queue_name, "-c", "2", "--prefetch-multiplier", "1",
                            "-n", names[0], "-Q", f"{queue_name},{queue_name}-first"),
               start_worker(broker, queue_name, "-c", "2", "-n", names[1])]
    yield started
    for process in started:
        process.stop()


def starts(path: Path) -> dict[str, float]:
    lines = path.read_text().splitlines() if path.exists() else []
    return {label: float(when) for label, when in (line.split() for line in lines)}


def set_rate(broker, queue_name, names, task_name: str, rate: str, *, broadcast: bool = False
             ) -> list[str]:
    """Run the control command; named workers answer and it returns as soon as both have.

    ``broadcast`` sends to every worker instead, which waits out the whole timeout: no one
    knows how many workers there are to wait for.
    """
    rebind_mailboxes(broker, names)  # pytest-django's flush after each test removed them
    where = [] if broadcast else ["-d", ",".join(names)]
    done = run_command(broker, queue_name, "djtasks", "control", "rate_limit", task_name, rate,
                       "--timeout", "3", *where)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    # Celery's form, "-> name: STATUS" then the answer indented, read as "name: STATUS answer".
    return [f"{head[3:]} {body.strip()}" for head, body in pairwise(printed)
            if head.startswith("-> ")]


def test_the_command_sets_the_rate_on_every_worker(workers, names, broker, queue_name):
    lines = set_rate(broker, queue_name, names, "tests.testapp.tasks.add", "10/m", broadcast=True)
    for name in names:
        assert f"{name}: OK new rate limit set successfully" in lines
    lines = set_rate(broker, queue_name, names, "tests.testapp.tasks.add", "0")
    for name in names:
        assert f"{name}: OK rate limit disabled successfully" in lines


def test_a_bad_rate_or_an_unknown_task_is_answered_with_an_error(workers, names, broker, queue_name):
    lines = set_rate(broker, queue_name, names, "tests.testapp.tasks.add", "10/fortnight")
    for name in names:
        assert f"{name}: ERROR invalid rate limit: rate_limit: expected the unit s, m or h, " \
               f"got '10/fortnight'" in lines
    lines = set_rate(broker, queue_name, names, "no.such.task", "10/m")
    for name in names:
        assert f"{name}: ERROR unknown task 'no.such.task'" in lines


def test_the_rate_holds_while_another_task_runs_at_once(workers, names, broker, queue_name,
                                                        app_settings, tmp_path):
    set_rate(broker, queue_name, names, "tests.testapp.tasks.clock_in", RATE)
    path = tmp_path / "starts.txt"
    first = f"{queue_name}-first"
    # More limited messages than the prefetch window, then one of another task.
    limited = [tasks.clock_in.apply_async((str(path), f"limited-{i}"), queue=first) for i in range(5)]
    free = tasks.clock_in_free.apply_async((str(path), "free"), queue=first)
    try:
        wait_until(lambda: len(starts(path)) >= 4, timeout=60, message="three limited starts")
        seen = starts(path)
        # The spacing, not the order: consuming children each hold some of the messages.
        limited_starts = sorted(at for name, at in seen.items() if name.startswith("limited-"))
        assert limited_starts[1] - limited_starts[0] >= SPACING
        assert limited_starts[2] - limited_starts[1] >= SPACING
        # It came after five held messages, two more than the window, and did not wait.
        assert seen["free"] < limited_starts[1]
        assert free.get(timeout=1) == "free"
    finally:
        set_rate(broker, queue_name, names, "tests.testapp.tasks.clock_in", "0")
    for result in limited:
        result.get(timeout=30)


def test_a_rate_limit_set_on_the_decorator_holds(workers, app_settings, queue_name, tmp_path):
    path = tmp_path / "starts.txt"
    results = [tasks.clock_in_limited.apply_async((str(path), f"n{i}"), queue=f"{queue_name}-first")
               for i in range(3)]
    for result in results:
        result.get(timeout=30)
    seen = sorted(starts(path).values())
    # 2/s: 0.5 s apart, less the time a pool process takes to begin the task.
    assert seen[1] - seen[0] >= 0.4
    assert seen[2] - seen[1] >= 0.4
