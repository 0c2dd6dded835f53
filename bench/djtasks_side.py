"""The client operations of the benchmark, done with djtasks (run inside ``bench.client``).

Configured like any djtasks client: Django settings ``bench.settings`` plus the DJTASKS_*
variables that ``bench.systems`` sets for the run.
"""

from __future__ import annotations

from typing import Any

import django
from django.db import connections

django.setup()

import djtasks  # noqa: E402 - the tasks' app needs the settings that setup() loaded
from bench import queues  # noqa: E402
from bench.benchapp.tasks import noop, number, pause, stamp, total  # noqa: E402
from djtasks.models import (  # noqa: E402
    ChordCounter,
    ChordPart,
    GroupResult,
    QueueMessage,
    RoutingRule,
    TaskResult,
)

#: What ``reset_results`` empties: results, django:// messages, the canvas' joins, the rules.
TABLES = (TaskResult, QueueMessage, GroupResult, ChordCounter, ChordPart, RoutingRule)


#: Finished results as the worker writes them, a second apart in the past.
FILL_RESULTS = """
    INSERT INTO {table} (task_id, task_name, status, result, traceback, date_created, date_started,
        date_done, date_received, runtime, worker, retries, queue, parent_id, root_id, group_id,
        task_args, task_kwargs, children, args, kwargs, retry_of)
    SELECT gen_random_uuid()::text, 'bench.benchapp.tasks.noop', 'SUCCESS', 'null'::jsonb, '',
        t, t, t, t, 0.001, 'bench-djtasks@filler', 0, %s, '', '', '', '()', '{{}}', '[]'::jsonb,
        '[]'::jsonb, '{{}}'::jsonb, ''
    FROM (SELECT now() - i * interval '1 second' AS t FROM generate_series(1, %s) AS i) AS times
"""
#: Messages waiting on a queue no worker of the run consumes.
FILL_MESSAGES = """
    INSERT INTO {table} (queue, payload, priority, visible_at, delivery_count, created_at)
    SELECT %s, %s, 0, now(), 0, now() FROM generate_series(1, %s)
"""
#: About the size of a real no-op message of the django:// transport (body, headers, properties).
PAYLOAD = '{"body": "' + "W10=" * 16 + '", "headers": {' + '"x": "' + "y" * 700 + '"}}'


class Side:
    """djtasks' way of doing each step; ``bench.celery_side.Side`` has the same methods."""

    def __init__(self) -> None:
        self.app = djtasks.app
        self.queue = self.app.router.queue(self.app.settings.task_default_queue)
        self.connection = self.app.connection()
        self.channel = self.connection.channel()

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
        return djtasks.chord(header)(total.s())

    def wait(self, result: Any, timeout: float) -> Any:
        """Return the result's value; djtasks' TimeoutError is a builtin TimeoutError."""
        return result.get(timeout=timeout)

    def state(self, task_id: str) -> str:
        return self.app.AsyncResult(task_id).state

    def value(self, task_id: str) -> Any:
        return self.app.AsyncResult(task_id).get(timeout=10)

    def install_routing_rules(self, n: int) -> None:
        """Make ``n`` enabled rules: n - 1 that match nothing here (globs and regexes), tried
        first, then one that routes the benchmark's tasks to this same queue."""
        RoutingRule.objects.all().delete()
        if not n:
            return
        rules = [RoutingRule(name=f"bench-{i:03}", order=i, queue=f"elsewhere-{i}",
                             **({"pattern": rf"^elsewhere{i}\.tasks\.", "match": "regex"} if i % 3 == 0
                                else {"pattern": f"elsewhere{i}.tasks.*"}))
                 for i in range(n - 1)]
        rules.append(RoutingRule(name="bench-last", order=n, pattern="bench.benchapp.tasks.*",
                                 queue=self.queue.name))
        RoutingRule.objects.bulk_create(rules)
        found = self.app.explain_route(noop.name)
        if found.source != 'rule "bench-last"' or found.route.queue.name != self.queue.name:
            raise SystemExit(f"routing rules: expected noop routed by bench-last, got {found.lines()}")

    def fill(self, results: int, messages: int) -> None:
        """Add ``results`` finished results and ``messages`` messages waiting on another queue.

        The cost-growth row: tables as a busy deployment has them. One INSERT ... SELECT
        from generate_series each (PostgreSQL), then ANALYZE, as autovacuum would have.
        """
        result_table, message_table = TaskResult._meta.db_table, QueueMessage._meta.db_table
        with connections["default"].cursor() as cursor:
            cursor.execute(FILL_RESULTS.format(table=result_table), [self.queue.name, results])
            cursor.execute(FILL_MESSAGES.format(table=message_table),
                           [f"{self.queue.name}-elsewhere", PAYLOAD, messages])
            cursor.execute(f"ANALYZE {result_table}, {message_table}")

    def queue_size(self) -> int:
        return queues.size(self.queue, self.channel)

    def purge(self) -> None:
        queues.purge(self.queue, self.channel)

    def delete_queue(self) -> None:
        queues.delete(self.queue, self.channel, self.connection)

    def reset_results(self) -> None:
        """Empty the result, django:// queue and canvas tables of the bench databases.

        They belong to the benchmark alone; vacuumed, so that every run starts alike. On
        PostgreSQL one TRUNCATE: the cost-growth row leaves a million rows to remove.
        """
        tables = ", ".join(m._meta.db_table for m in TABLES)
        for alias in connections:
            with connections[alias].cursor() as cursor:
                if connections[alias].vendor == "postgresql":
                    cursor.execute(f"TRUNCATE {tables}")
                    cursor.execute(f"VACUUM ANALYZE {tables}")
                    continue
                for model in TABLES:
                    cursor.execute(f"DELETE FROM {model._meta.db_table}")

    def close(self) -> None:
        self.connection.release()
        self.app.close()
