"""Tasks the test suite runs on real workers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from djtasks import task
from djtasks.exceptions import SoftTimeLimitExceeded


class CustomError(Exception):
    """A user-defined exception: get() must re-raise this very type."""


@task
def add(x, y):
    return x + y


@task
def mul(x, y):
    return x * y


@task
def fail(message="boom"):
    raise CustomError(message)


@task
def record(path, token, seconds=0.0):
    """Append ``token`` to the file at ``path`` (after sleeping): counts executions."""
    time.sleep(seconds)
    with Path(path).open("a") as fh:
        fh.write(f"{token}\n")
    return token


@task(acks_late=True)
def record_late(path, token, seconds=0.0):
    """Like record, acknowledged only after it returns."""
    with Path(path).open("a") as fh:
        fh.write(f"start {token}\n")
    time.sleep(seconds)
    with Path(path).open("a") as fh:
        fh.write(f"done {token}\n")
    return token


@task
def crash(code=3):
    os._exit(code)


@task
def segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


@task
def pid():
    return os.getpid()


@task(bind=True)
def whoami(self):
    return {"id": self.request.id, "hostname": self.request.hostname, "task": self.name}


@task
def wait_for_other(task_id):
    from djtasks import AsyncResult

    return AsyncResult(task_id).get(timeout=1)


@task
def unserializable():
    return object()


@task(bind=True)
def stamp(self, path):
    """Append the time and this run's id to ``path``: beat tests count and space the runs."""
    with Path(path).open("a") as fh:
        fh.write(f"{time.time():.3f} {self.request.id}\n")


@task
def nul_char():
    """PostgreSQL's jsonb cannot hold a NUL: the result write itself fails."""
    return "a\x00b"


# -- the canvas ---------------------------------------------------------------------------
@task
def xsum(numbers):
    return sum(numbers)


@task
def numbers(count):
    """A result as large as one wants: ``[0, 1, ..., count - 1]``."""
    return list(range(count))


@task
def fail_unserializable():
    raise ValueError(object())  # an argument JSON cannot hold


@task
def fail_at_length(length):
    raise CustomError("z" * length)


@task
def identity(value):
    return value


@task
def log_error(request, exc, traceback, path):
    """An errback of Celery's (request, exc, traceback) kind: records what it was told."""
    with Path(path).open("a") as fh:
        fh.write(f"{request.id} {type(exc).__name__} {exc}\n")


@task
def log_failed_id(task_id, *, path):
    """An errback that takes one positional argument: it is sent the failed task's id."""
    with Path(path).open("a") as fh:
        fh.write(f"{task_id}\n")


@task
def spawn(count):
    """Send ``count`` add() calls from inside a task: they become its children."""
    return [add.delay(i, i).id for i in range(count)]


@task(acks_late=True)
def slow_add(x, y, seconds=0.0):
    time.sleep(seconds)
    return x + y


@task
def collect(results, path):
    """A chord body that counts its own executions: one line per run in ``path``."""
    with Path(path).open("a") as fh:
        fh.write(f"{len(results)}\n")
    return results


# -- time limits, worker recycling and loss (issue 4, pools) ------------------------------
@task
def nap(seconds):
    """Sleep in one blocking call: only a signal or a kill ends it early."""
    time.sleep(seconds)
    return seconds


def _outlast(seconds):
    # Short steps: a thread sees an asynchronous exception only between Python instructions.
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "slept"


@task
def outlast(seconds):
    """Sleep; return "cleaned up" if a soft time limit interrupted it, else "slept"."""
    return _outlast(seconds)


@task(soft_time_limit=1)
def outlast_soft(seconds):
    """outlast() with a soft time limit of its own."""
    return _outlast(seconds)


@task(time_limit=30)
def hard_limited():
    """A registered task with a hard limit: a threads worker warns it cannot enforce it."""
    return "done"


def _die_on_first_run(path):
    record = Path(path)
    earlier = record.read_text().split() if record.exists() else []
    with record.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    if not earlier:
        time.sleep(60)  # the test kills this process meanwhile
    return len(earlier) + 1


@task(acks_late=True, reject_on_worker_lost=True)
def die_requeued(path):
    """Note the pid in ``path``; on the first run wait to be killed; return the run count."""
    return _die_on_first_run(path)


@task(acks_late=True)
def die_failed(path):
    """die_requeued() without reject_on_worker_lost: its death fails it."""
    return _die_on_first_run(path)


# -- remote control and rate limits (issue 4, control) ---------------------------------------
def _clock_in(path, label):
    with Path(path).open("a") as fh:
        fh.write(f"{label} {time.time()}\n")


@task
def clock_in(path, label, seconds=0.0):
    """Append "<label> <start time>" to ``path`` as it starts, then sleep ``seconds``."""
    _clock_in(path, label)
    time.sleep(seconds)
    return label


@task
def clock_in_free(path, label):
    """Like clock_in, another task type: no rate limit is ever set on it."""
    _clock_in(path, label)
    return label


@task(rate_limit="2/s")
def clock_in_limited(path, label):
    """Like clock_in, limited to 2 starts a second by its decorator."""
    _clock_in(path, label)
    return label


# -- ETA and delivery limits (issue 4, eta) ---------------------------------------------------
@task(bind=True)
def run_at(self, path):
    """Append "<time it ran> <task id>" to ``path``: ETA tests check none runs early or twice."""
    with Path(path).open("a") as fh:
        fh.write(f"{time.time():.6f} {self.request.id}\n")


@task(acks_late=True, reject_on_worker_lost=True)
def poison(path):
    """Note a start in ``path``, then kill the process running it: a message that kills workers."""
    with Path(path).open("a") as fh:
        fh.write("start\n")
    os._exit(3)


# -- execution (issue 4, exec): tasks, handlers and signal receivers of test_execution --------
# and the e2e tier's (issue 11, console)
from tests.testapp import e2e, execution  # noqa: E402, F401 - registers them in every worker


@task(sensitive=True)
def secret_add(x, y):
    """Arguments too private to show: messages, rows and events say "[hidden]"."""
    return x + y


@task(track_started=True)
def clock_in_tracked(path, label, seconds=0.0):
    """Like clock_in, with its STARTED state stored: the console sees it running."""
    _clock_in(path, label)
    time.sleep(seconds)
    return label
