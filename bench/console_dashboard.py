"""Time the admin dashboard over 1,000,000 TaskResult rows on PostgreSQL (python -m bench.console_dashboard).

Fills a database of its own (``djtasks_bench_dashboard``) in one server-side
``INSERT ... SELECT generate_series`` with results spread over the last day (states, task
names, runtimes, retries), then renders ``/admin/djtasks/dashboard/`` with Django's test
client as a logged-in superuser several times and prints the median and the worst time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "djtasks_bench_dashboard"
HOST = os.environ.get("DJTASKS_BENCH_PG_HOST", "127.0.0.1")

# One row of 1,000,000: id i gets a state by i % 100, a name by i % 50 and a done time
# spread evenly over the last 24 hours; runtimes grow with the name so p95s differ.
FILL = """
INSERT INTO djtasks_taskresult (task_id, task_name, status, result, traceback, date_created,
    date_started, date_done, date_received, runtime, worker, retries, queue, parent_id, root_id,
    group_id, task_args, task_kwargs, args, kwargs, children)
SELECT 'bench-' || i, 'bench.tasks.t' || (i %% 50),
    CASE WHEN i %% 100 < 85 THEN 'SUCCESS' WHEN i %% 100 < 93 THEN 'FAILURE'
         WHEN i %% 100 < 97 THEN 'RETRY' ELSE 'STARTED' END,
    CASE WHEN i %% 100 BETWEEN 85 AND 92
         THEN '{"exc_type": "ValueError", "exc_message": "bench failure"}'::jsonb END,
    '', done - interval '1 second', done - interval '1 second', done, done - interval '1 second',
    (i %% 50) * 0.01 + random() * (1 + i %% 7), 'bench@host' || (i %% 8), (i %% 20 = 0)::int,
    'bench', '', '', '', '()', '{}', NULL, NULL, '[]'::jsonb
FROM (SELECT i, now() - (i * interval '86400 seconds' / %(rows)s) AS done
      FROM generate_series(1, %(rows)s) AS i) AS spread
"""


def configure(database: str = DATABASE) -> None:
    """Configure Django on the test suite's settings, with ``database`` on PostgreSQL as default."""
    import django
    from django.conf import settings

    sys.path.insert(0, str(ROOT))
    from tests import settings as base

    values = {name: getattr(base, name) for name in dir(base) if name.isupper()}
    values["DATABASES"] = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": database,
                                       "USER": "postgres", "HOST": HOST, "PORT": 5432}}
    values["DJTASKS"] = {"broker_url": "django://default", "result_backend": "django-db://default"}
    values["ALLOWED_HOSTS"] = ["testserver"]
    values["DEBUG"] = False
    settings.configure(**values)
    django.setup()


def create_database(database: str = DATABASE) -> None:
    """Create ``database`` on the local PostgreSQL server unless it exists."""
    import psycopg

    with psycopg.connect(host=HOST, user="postgres", dbname="postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            admin.execute(f'CREATE DATABASE "{database}"')


def fill(rows: int) -> None:
    from django.db import connection

    from djtasks.models import TaskResult

    present = TaskResult.objects.filter(task_id__startswith="bench-").count() if rows else 0
    if present == rows:
        print(f"{rows} rows already there")
        return
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE djtasks_taskresult")
        cursor.execute(FILL, {"rows": rows})
    # Autovacuum would do this soon after a real fill; it sets the visibility map that lets
    # the chart queries answer from the (status, date_done) index alone.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE djtasks_taskresult")
    print(f"filled {rows} rows in {time.perf_counter() - started:.1f} s")


def time_dashboard(runs: int) -> list[float]:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", password="bench")
    client = Client()
    client.force_login(user)
    client.get("/admin/djtasks/dashboard/")  # warm: connections, templates
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get("/admin/djtasks/dashboard/")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    arguments = parser.parse_args()
    create_database()
    configure()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    fill(arguments.rows)
    times = time_dashboard(arguments.runs)
    print(f"dashboard over {arguments.rows} rows, {arguments.runs} runs: "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
