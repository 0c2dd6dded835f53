"""Micro-benchmarks of djtasks' storage statements: django:// acks, chord counting, result writes.

    BENCH_POSTGRES_URL=... python -m bench.storage_micro [--n 2000]

Each figure is the wall time (and this process's CPU time) per operation, over ``--n``
operations in a loop on one connection, on PostgreSQL (``default``) and SQLite
(``sqlite``) of ``bench.settings``. It measures the code of the checkout it runs from, so
running it from two checkouts compares them.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import django


def timed(label: str, count: int, run: Callable[[], None]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  {label:<46} {wall / count * 1e6:8.1f} us/op  (cpu {cpu / count * 1e6:6.1f} us)")


def ready_rows(alias: str, queue: str, n: int) -> list[int]:
    """Insert ``n`` ready messages into ``queue``; return their row ids."""
    from django.utils import timezone
    from kombu.utils.json import dumps

    from djtasks.models import QueueMessage

    now = timezone.now()
    rows = [QueueMessage(queue=queue, payload=dumps({"n": i}), priority=0, visible_at=now,
                         created_at=now) for i in range(n)]
    QueueMessage.objects.using(alias).bulk_create(rows)
    return list(QueueMessage.objects.using(alias).filter(queue=queue).values_list("id", flat=True))


def acks(alias: str, n: int) -> None:
    from django.db import connections

    from djtasks.transport.statements import build

    sql = build(connections[alias])
    if "{ids}" not in sql.ack:
        print("  ack: (this checkout deletes one row per ack only; not measured)")
        return

    def deletes(size: int) -> Callable[[], None]:
        ids = ready_rows(alias, f"micro-{uuid.uuid4().hex[:8]}", n)

        def run() -> None:
            with connections[alias].cursor() as cursor:
                for start in range(0, len(ids), size):
                    cursor.execute(*sql.with_ids(sql.ack, ids[start:start + size]))
        return run

    for size in (1, 8, 32):
        timed(f"ack: one DELETE per {size} message(s)", n, deletes(size))


def fetch_rounds(alias: str, n: int) -> None:
    """A consumer's round: lease 8 rows and delete the 8 acked since the round before."""
    from django.db import connections
    from django.utils import timezone

    from djtasks.transport.statements import build, fetch_params

    sql = build(connections[alias])
    if getattr(sql, "fetch_acking", None) is None:
        return
    lease_until = timezone.now() + timedelta(hours=1)

    def rounds(together: bool) -> Callable[[], None]:
        queue = f"micro-{uuid.uuid4().hex[:8]}"
        acked = ready_rows(alias, f"{queue}-acked", n)
        ready_rows(alias, queue, n)

        def run() -> None:
            with connections[alias].cursor() as cursor:
                for start in range(0, n, 8):
                    params = fetch_params(sql, queue, timezone.now(), lease_until, 8)
                    ids = acked[start:start + 8]
                    if together:
                        cursor.execute(sql.fetch_acking, [ids, *params])
                    else:
                        cursor.execute(*sql.with_ids(sql.ack, ids))
                        cursor.execute(sql.fetch, params)
                    cursor.fetchall()
        return run

    timed("fetch 8 and delete 8 acked: two statements", n, rounds(together=False))
    timed("fetch 8 and delete 8 acked: one statement", n, rounds(together=True))


def consume(alias: str, n: int) -> None:
    """A kombu consumer on django:// (prefetch 8) that acks every message, in this process."""
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    name = f"micro-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with Connection(f"django://{alias}") as conn:
        producer = Producer(conn)
        for i in range(n):
            producer.publish(i, exchange=queue.exchange, routing_key=name, declare=[queue])
        received = []

        def on_message(body: object, message: object) -> None:
            received.append(body)
            message.ack()  # type: ignore[attr-defined]

        def run() -> None:
            with Consumer(conn, [queue], callbacks=[on_message], prefetch_count=8):
                while len(received) < n:
                    conn.drain_events(timeout=10)

        timed("consume and ack (kombu, prefetch 8)", n, run)


def chords(alias: str, n: int) -> None:
    from djtasks.backends.database import DatabaseBackend

    backend = DatabaseBackend(alias)
    group = f"micro-{uuid.uuid4().hex[:8]}"
    members = [f"{group}-{i}" for i in range(n + 1)]  # the last part is not counted here
    backend.start_chord(group, members, {"task": "bench.noop", "args": [], "kwargs": {}, "options": {}})

    def run() -> None:
        for task_id in members[:n]:
            with backend.chord_part_done(group, task_id, failed=False) as join:
                assert join is None

    timed("chord: count a header task (not the last)", n, run)
    backend.forget_group(group)


def results(alias: str, n: int) -> None:
    from djtasks import states
    from djtasks.backends.base import ExecutionInfo
    from djtasks.backends.database import DatabaseBackend

    backend = DatabaseBackend(alias)
    prefix = uuid.uuid4().hex[:8]
    info = ExecutionInfo(task_name="bench.noop", worker="micro", queue="micro", retries=0)

    def run() -> None:
        for i in range(n):
            backend.store(f"{prefix}-{i}", states.SUCCESS, i, info=info)

    timed("result: store SUCCESS", n, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    for alias, name in (("default", "PostgreSQL"), ("sqlite", "SQLite")):
        call_command("migrate", database=alias, verbosity=0)
        print(f"{name} ({connections[alias].vendor}), n={options.n}")
        for measure in (acks, fetch_rounds, consume, chords, results):
            measure(alias, options.n)


if __name__ == "__main__":
    main()
