"""djtasks tasks of the benchmark; ``bench.celeryapp`` defines the same names for Celery."""

from __future__ import annotations

import time

from djtasks import task


@task
def noop():
    pass


@task(ignore_result=False)
def stamp():
    """Return the worker's wall clock: the first and last stamp of a drain bracket it."""
    return time.time()


@task
def pause():
    """Sleep 10 ms: the task of the threads-pool row, a stand-in for waiting on I/O."""
    time.sleep(0.01)


@task
def number(i):
    """Return ``i``: a chord header task, a no-op that gives the body something to add."""
    return i


@task
def total(values):
    """Return the sum of the header's values: the body of the chord phase."""
    return sum(values)
