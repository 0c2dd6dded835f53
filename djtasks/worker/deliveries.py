"""DeliveryLimit: stop a message whose execution keeps killing its worker (processes layer).

With ``acks_late`` a message is acknowledged after its task returns, so a task that kills
its process (a segfault, the OOM killer, ``os._exit``) is delivered again, and again, for
ever. Each start of an acks_late task is counted in the database (TaskDelivery), keyed by
task id and retry number (a retry is a new message of the same id and must not inherit
the count), so the count survives worker restarts and holds on every broker, Redis
included. Past ``task_max_deliveries`` the message is not run: its result becomes FAILURE
with the reason, it is kept as a DeadLetter row, and it is acknowledged.

Counted in the consumer (main process) just before dispatch, not in the pool member: the
count must be written even when the member dies at once, and the decision not to run
belongs with the acknowledgement, which only the main process can give. Tasks acknowledged
early are not counted: a crash cannot bring their message back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import kombu
from django.db import DatabaseError, connections, router
from django.utils import timezone

from djtasks import states
from djtasks.application import App
from djtasks.backends.base import exception_to_dict
from djtasks.exceptions import WorkerLostError
from djtasks.models import DeadLetter, TaskDelivery
from djtasks.models.columns import column
from djtasks.task import Request
from djtasks.worker.eta import source_queue
from djtasks.worker.received import as_received
from djtasks.worker.workflow import Workflow

logger = logging.getLogger("djtasks.worker")


class DeliveryLimit:
    """Count the starts of acks_late messages; refuse those past ``task_max_deliveries``."""

    def __init__(self, app: App, hostname: str, workflow: Workflow,
                 queues: Callable[[], Sequence[kombu.Queue]] = tuple) -> None:
        self.app = app
        self.hostname = hostname
        self.workflow = workflow
        # Read when a message is dead-lettered, not copied now: add_consumer and
        # cancel_consumer change the consumed queues while the worker runs, and a replay
        # must go to the queue the message came from.
        self.queues = queues
        self.limit = app.settings.task_max_deliveries
        self.db = router.db_for_write(TaskDelivery)

    def admit(self, request: Request, message: kombu.Message) -> bool:
        """Count this start of ``request``; False when it is past the limit (then it is dead-lettered).

        When the count cannot be written the task runs: a database hiccup must not stop
        healthy work, and the next delivery is counted again.
        """
        if not self.limit or not request.acks_late:
            return True
        try:
            count = count_delivery(self.db, request.message.id, request.message.retries)
        except DatabaseError:
            logger.exception("Task %s: could not count its delivery; running it", request.label)
            return True
        if count <= self.limit:
            return True
        self.dead_letter(request, message, count)
        return False

    def dead_letter(self, request: Request, message: kombu.Message, count: int) -> None:
        """Fail ``request`` without running it, keep it as a DeadLetter, and acknowledge it."""
        reason = (f"delivered {count} times (task_max_deliveries is {self.limit}); its "
                  f"execution keeps killing the worker process")
        logger.error("Task %s dead-lettered: %s", request.label, reason)
        error = WorkerLostError(reason)
        task = request.message
        # Kept as received, so the console can replay it unchanged; a dead letter replayed
        # before and dead-lettered again may be replayed again.
        kept = as_received(message, source_queue(message.delivery_info, self.queues()), task.priority)
        DeadLetter.objects.using(self.db).keep(task.id, {
            # "queue" is where a replay goes, as for a parked message: "" means through
            # the exchange and routing key it was published with.
            **kept, "task_name": task.task,
            "task_args": task.argsrepr or "", "task_kwargs": task.kwargsrepr or "",
            "retries": task.retries, "deliveries": count, "reason": reason,
            "reason_code": "too_many_deliveries", "worker": self.hostname,
            "date_created": timezone.now(),
        }, self.app.settings.dead_letter_max_count)
        self.app.backend.store(task.id, states.FAILURE, exception_to_dict(error))
        try:
            self.workflow.on_failure(task, request, error, "")
            self.workflow.count_in_chord(task, failed=True)
        except Exception:
            logger.exception("Could not fail the canvas of dead-lettered task %s", request.label)
        message.ack()


def count_delivery(db: str, task_id: str, retries: int) -> int:
    """Add one delivery of (task_id, retries) and return the new count, in one statement."""
    connection = connections[db]
    quote = connection.ops.quote_name
    meta = TaskDelivery._meta
    table = quote(meta.db_table)
    task, tries, count, last = (quote(column(TaskDelivery, name))
                                for name in ("task_id", "retries", "count", "date_last"))
    # An upsert both PostgreSQL and SQLite (3.35+) run: atomic, whoever counts at once.
    sql = (f"INSERT INTO {table} ({task}, {tries}, {count}, {last}) VALUES (%s, %s, 1, %s) "  # noqa: S608 - quoted model names only
           f"ON CONFLICT ({task}, {tries}) DO UPDATE SET {count} = {table}.{count} + 1, "
           f"{last} = excluded.{last} RETURNING {count}")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [task_id, retries, now])
        (value,) = cursor.fetchone()
    return value
