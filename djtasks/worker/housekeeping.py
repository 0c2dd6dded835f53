"""The built-in ``djtasks.backend_cleanup`` task: delete results past result_expires (processes layer).

Beat sends it daily at 4:00 (``App.periodic_schedule``), as Celery sends
``celery.backend_cleanup``; any worker runs it. It also prunes the workers' delivery counts
of the same age: a message is not delivered again a day later, the ``Worker`` rows of
workers not heard of for ``worker_forget_after`` seconds, and the dead letters older than
``dead_letter_expires`` (they are for people to look at, so they are kept longer; their
count is bounded as each is written). Parked messages are kept: they are work still to do.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import router
from django.utils import timezone

from djtasks.application import BACKEND_CLEANUP, shared_task
from djtasks.backends.expiry import BATCH_SIZE, delete_in_batches
from djtasks.models import DeadLetter, TaskDelivery, Worker
from djtasks.task import Task

logger = logging.getLogger("djtasks.worker")


@shared_task(name=BACKEND_CLEANUP, bind=True, ignore_result=True)
def backend_cleanup(self: Task) -> dict[str, int]:
    """Delete results (and delivery counts) older than ``result_expires``, gone workers' rows."""
    now = timezone.now()
    settings = self.app.settings
    forgotten = forget_workers(now - timedelta(seconds=settings.worker_forget_after))
    dead = expire_dead_letters(now, settings.dead_letter_expires)
    expires = settings.result_expires
    if not expires:
        logger.info("%s: result_expires is not set; no result deleted", BACKEND_CLEANUP)
        return {"Worker": forgotten, "DeadLetter": dead}
    before = now - timedelta(seconds=expires)
    deleted = dict(self.app.backend.cleanup(before, now))
    deliveries = TaskDelivery.objects.using(router.db_for_write(TaskDelivery))
    deleted["TaskDelivery"] = delete_in_batches(deliveries.filter(date_last__lt=before), BATCH_SIZE)
    deleted["Worker"] = forgotten
    deleted["DeadLetter"] = dead
    logger.info("%s: deleted %s", BACKEND_CLEANUP,
                ", ".join(f"{count} {name}" for name, count in deleted.items()))
    return deleted


def expire_dead_letters(now: datetime, expires: float | None) -> int:
    """Delete the dead letters older than ``expires`` seconds (None or 0: none); return how many."""
    if not expires:
        return 0
    rows = DeadLetter.objects.using(router.db_for_write(DeadLetter))
    return delete_in_batches(rows.filter(date_created__lt=now - timedelta(seconds=expires)), BATCH_SIZE)


def forget_workers(before: datetime) -> int:
    """Delete the Worker rows of workers last heard of before ``before``; return how many."""
    rows = Worker.objects.using(router.db_for_write(Worker)).forgotten(before)
    return delete_in_batches(rows, BATCH_SIZE)
