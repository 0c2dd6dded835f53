"""The Celery app of the benchmark: the same task names as ``bench.benchapp.tasks``.

Configured from the environment by ``bench.systems`` (BENCH_CELERY_*). The Celery
features that djtasks does not have (gossip, mingle, heartbeats, remote control) are
switched off so that Celery spends nothing on them; its defaults stay otherwise: JSON,
protocol 2, acks before execution, prefetch multiplier 4.
"""

from __future__ import annotations

import os
import time

import django
from celery import Celery

RESULT_BACKEND = os.environ.get("BENCH_CELERY_RESULT_BACKEND") or None
if RESULT_BACKEND == "django-db":
    # django-celery-results' backend imports its models: the apps must be ready first.
    django.setup()

app = Celery("bench")
app.conf.update(
    broker_url=os.environ.get("BENCH_CELERY_BROKER_URL", "memory://"),
    result_backend=RESULT_BACKEND,
    task_default_queue=os.environ.get("BENCH_QUEUE", "celery"),
    worker_prefetch_multiplier=4,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)
if RESULT_BACKEND == "django-db":
    # Celery's Django fix-up closes the database connections before and after every task
    # unless this is set; then it closes them every 2 x this many tasks. Like djtasks'
    # CONN_MAX_AGE=60, it gives the worker a connection it keeps (BENCH_CELERY_DB_REUSE_MAX=0:
    # Celery's default, a new connection for every task).
    app.conf.CELERY_DB_REUSE_MAX = int(os.environ.get("BENCH_CELERY_DB_REUSE_MAX", "100000")) or None


@app.task(name="bench.benchapp.tasks.noop")
def noop():
    pass


@app.task(name="bench.benchapp.tasks.stamp", ignore_result=False)
def stamp():
    """Return the worker's wall clock: the first and last stamp of a drain bracket it."""
    return time.time()


@app.task(name="bench.benchapp.tasks.pause")
def pause():
    """Sleep 10 ms: the task of the threads-pool row, a stand-in for waiting on I/O."""
    time.sleep(0.01)


@app.task(name="bench.benchapp.tasks.number")
def number(i):
    """Return ``i``: a chord header task, a no-op that gives the body something to add."""
    return i


@app.task(name="bench.benchapp.tasks.total")
def total(values):
    """Return the sum of the header's values: the body of the chord phase."""
    return sum(values)
