"""The built-in ``djtasks.backend_cleanup`` task: delete results past result_expires (processes layer).

Beat sends it daily at 4:00 (``App.periodic_schedule``), as Celery sends
``celery.backend_cleanup``; any worker runs it. It also prunes the workers' delivery counts
of the same age: a message is not delivered again a day later, and the ``Worker`` rows of
workers not heard of for ``worker_forget_after`` seconds. Dead letters and parked
messages are kept: the first are for people to look at, the second are work still to do.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import router
from django.utils import timezone

from djtasks.application import BACKEND_CLEANUP, shared_task
from djtasks.backends.expiry import BATCH_SIZE, delete_in_batches
from djtasks.models import TaskDelivery, Worker
from djtasks.task import Task

logger = logging.getLogger("djtasks.worker")


@shared_task(name=BACKEND_CLEANUP, bind=True, ignore_result=True)
def backend_cleanup(self: Task) -> dict[str, int]:
    """Delete results (and delivery counts) older than ``result_expires``, gone workers' rows."""
    now = timezone.now()
    forgotten = forget_workers(now - timedelta(seconds=self.app.settings.worker_forget_after))
    expires = self.app.settings.result_expires
    if not expires:
        logger.info("%s: result_expires is not set; no result deleted", BACKEND_CLEANUP)
        return {"Worker": forgotten}
    before = now - timedelta(seconds=expires)
    deleted = dict(self.app.backend.cleanup(before, now))
    deliveries = TaskDelivery.objects.using(router.db_for_write(TaskDelivery))
    deleted["TaskDelivery"] = delete_in_batches(deliveries.filter(date_last__lt=before), BATCH_SIZE)
    deleted["Worker"] = forgotten
    logger.info("%s: deleted %s", BACKEND_CLEANUP,
                ", ".join(f"{count} {name}" for name, count in deleted.items()))
    return deleted


def forget_workers(before: datetime) -> int:
    """Delete the Worker rows of workers last heard of before ``before``; return how many."""
    rows = Worker.objects.using(router.db_for_write(Worker)).forgotten(before)
    return delete_in_batches(rows, BATCH_SIZE)
