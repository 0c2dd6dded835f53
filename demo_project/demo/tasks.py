"""The tasks of Celery's first-steps guide, and a slow one."""

import time

from djtasks import task


@task
def add(x, y):
    return x + y


@task
def mul(x, y):
    return x * y


@task
def xsum(numbers):
    return sum(numbers)


@task
def slow(seconds=1.0):
    time.sleep(seconds)
    return seconds
