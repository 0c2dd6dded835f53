"""The client operations of the benchmark, done with Celery (run inside ``bench.client``)."""

from __future__ import annotations

from typing import Any

import redis
from celery import chord
from celery.exceptions import TimeoutError as CeleryTimeoutError

from bench import queues
from bench.celeryapp import app, noop, number, pause, stamp, total

#: Celery's keys in the benchmark's result database: task results and chord joins.
RESULT_KEYS = ("celery-task-meta-*", "celery-taskset-meta-*")


class Side:
    """Celery's way of doing each step; ``bench.djtasks_side.Side`` has the same methods."""

    def __init__(self) -> None:
        self.app = app
        self.queue = app.amqp.queues[app.conf.task_default_queue]
        self.connection = app.connection_for_write()
        self.channel = self.connection.channel()

    def install_routing_rules(self, n: int) -> None:
        if n:
            raise SystemExit("routing rules: Celery has none to measure")

    def send_noop(self, ignore_result: bool) -> str:
        if ignore_result:
            return noop.apply_async(ignore_result=True).id
        return noop.delay().id

    def send_pause(self) -> str:
        return pause.apply_async(ignore_result=True).id

    def send_stamp(self) -> str:
        return stamp.delay().id

    def roundtrip(self, timeout: float) -> None:
        noop.delay().get(timeout=timeout)

    def chord_header(self, n: int) -> list[Any]:
        return [number.s(i) for i in range(n)]

    def send_chord(self, header: list[Any]) -> Any:
        return chord(header)(total.s())

    def wait(self, result: Any, timeout: float) -> Any:
        """Return the result's value; raise the builtin TimeoutError, as djtasks does."""
        try:
            return result.get(timeout=timeout)
        except CeleryTimeoutError as exc:
            raise TimeoutError(str(exc)) from exc

    def state(self, task_id: str) -> str:
        return self.app.AsyncResult(task_id).state

    def value(self, task_id: str) -> Any:
        return self.app.AsyncResult(task_id).get(timeout=10)

    def queue_size(self) -> int:
        return queues.size(self.queue, self.channel)

    def purge(self) -> None:
        queues.purge(self.queue, self.channel)

    def delete_queue(self) -> None:
        queues.delete(self.queue, self.channel, self.connection)

    def reset_results(self) -> None:
        """Delete Celery's results and chord joins: keys of the benchmark's own redis database,
        or django-celery-results' rows in the benchmark's PostgreSQL database."""
        url = self.app.conf.result_backend
        if url == "django-db":
            # Here, not at the top: only this backend has django.setup() run (bench.celeryapp).
            from django_celery_results.models import ChordCounter, GroupResult, TaskResult

            for model in (TaskResult, GroupResult, ChordCounter):
                model.objects.all().delete()
            return
        if not url or not url.startswith("redis://"):
            return
        client = redis.Redis.from_url(url)
        try:
            batch = []
            for pattern in RESULT_KEYS:
                for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        client.delete(*batch)
                        batch.clear()
            if batch:
                client.delete(*batch)
        finally:
            client.close()

    def close(self) -> None:
        # Celery keeps each result it subscribed to (a chord's header: one per task sent)
        # until that result arrives. Let go of them here, where unsubscribing still works;
        # otherwise their __del__ runs while the interpreter shuts down and prints errors.
        backend = self.app.backend
        concrete = getattr(backend, "_pending_results", ({},))[0]  # task id -> {id(result): result}
        for result in [result for waiters in concrete.values() for result in waiters.values()]:
            backend.remove_pending_result(result)
        self.connection.release()
        self.app.close()
