"""A real Celery app, for proving wire compatibility with djtasks both ways (tests only)."""

import os

from celery import Celery

app = Celery("interop")
app.conf.update(
    broker_url=os.environ.get("INTEROP_BROKER_URL", "memory://"),
    result_backend=os.environ.get("INTEROP_RESULT_BACKEND", "cache+memory://"),
    task_default_queue=os.environ.get("INTEROP_QUEUE", "celery"),
    worker_hijack_root_logger=True,
)


@app.task(name="tests.testapp.tasks.add")
def add(x, y):
    # Offset by 1000 so the test knows Celery, not djtasks, ran it.
    return x + y + 1000
