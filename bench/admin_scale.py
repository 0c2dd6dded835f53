"""Time the TaskResult list and its bulk actions over 1,000,000 rows on PostgreSQL.

``python -m bench.admin_scale`` fills a database of its own (``djtasks_bench_admin``) with
server-side ``INSERT ... SELECT generate_series`` in chunks, printing progress, then ``VACUUM ANALYZE``.
One row in ten is a PENDING task in queue ``bulk-revoke`` and one in ten sits in queue
``bulk-delete``: each a "select all" of 100,000 rows for the bulk actions. With Django's
test client as a superuser it renders the changelist (no filter, a state filter, a name
search) and the dashboard several times each and prints the median and the worst time and
the page's queries. Then it runs the bulk revoke and the bulk delete on a "select all" of
each queue, once timed and once under tracemalloc for the peak memory, and puts the
deleted rows back.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

from bench.console_dashboard import configure, create_database

DATABASE = "djtasks_bench_admin"
LIST = "/admin/djtasks/taskresult/"
PAGES = {
    "changelist, no filter": LIST,
    "changelist, ?task_name=bench.tasks.t7": f"{LIST}?task_name=bench.tasks.t7",
    "changelist, ?worker=bench@host3": f"{LIST}?worker=bench@host3",
    "changelist, ?status__exact=FAILURE": f"{LIST}?status__exact=FAILURE",
    "changelist, ?q=bench.tasks.t4 (name prefix)": f"{LIST}?q=bench.tasks.t4",
    "changelist, ?q=bench-500000 (a task id)": f"{LIST}?q=bench-500000",
    "changelist, ?queue__exact=bulk-delete": f"{LIST}?queue__exact=bulk-delete",
    "dashboard": "/admin/djtasks/dashboard/",
    # Django pages by OFFSET: the last of 10,000 pages reads past every row before it.
    "changelist, page 5,000 (?p=5000)": f"{LIST}?p=5000",
}
CHUNK = 100_000

# Row i of n: created (and done) at a time spread evenly over the last 24 hours, newest
# first; i % 10 picks the queue and i % 100 the state. The task name (50) and the worker (8)
# come from a hash of i: taken from i they would follow the state (every name with
# i % 50 a multiple of 10 would only ever be PENDING).
FILL = """
INSERT INTO djtasks_taskresult (task_id, task_name, status, result, traceback, date_created,
    date_started, date_done, date_received, runtime, worker, retries, queue, parent_id, root_id,
    group_id, task_args, task_kwargs, args, kwargs, children)
SELECT 'bench-' || i, 'bench.tasks.t' || (abs(hashtext('n' || i)) %% 50),
    CASE WHEN i %% 10 = 0 THEN 'PENDING' WHEN i %% 100 < 85 THEN 'SUCCESS'
         WHEN i %% 100 < 93 THEN 'FAILURE' WHEN i %% 100 < 97 THEN 'RETRY' ELSE 'STARTED' END,
    CASE WHEN i %% 10 <> 0 AND i %% 100 BETWEEN 85 AND 92
         THEN '{"exc_type": "ValueError", "exc_message": "bench failure"}'::jsonb END,
    '', done - interval '1 second', done - interval '1 second', done, done - interval '1 second',
    (i %% 50) * 0.01 + random() * (1 + i %% 7), 'bench@host' || (abs(hashtext('w' || i)) %% 8),
    (i %% 20 = 0)::int,
    CASE i %% 10 WHEN 0 THEN 'bulk-revoke' WHEN 1 THEN 'bulk-delete' ELSE 'bench' END,
    '', '', '', '()', '{}', NULL, NULL, '[]'::jsonb
FROM (SELECT i, now() - (i * interval '86400 seconds' / %(rows)s) AS done
      FROM generate_series(%(first)s, %(last)s) AS i) AS spread
WHERE %(only_deleted)s = false OR i %% 10 = 1
"""


def fill(rows: int, again: bool = False) -> None:
    """Fill ``rows`` rows unless exactly those are there; put back the bulk-delete rows if gone."""
    from django.db import connection

    from djtasks.models import TaskResult

    present = TaskResult.objects.count()
    missing = TaskResult.objects.filter(queue="bulk-delete").count() == 0 and present == rows * 9 // 10
    if present == rows and not again:
        print(f"{rows} rows already there")
        return
    started = time.perf_counter()
    with connection.cursor() as cursor:
        if not missing:
            cursor.execute("TRUNCATE djtasks_taskresult")
        for first in range(1, rows + 1, CHUNK):
            last = min(first + CHUNK - 1, rows)
            cursor.execute(FILL, {"rows": rows, "first": first, "last": last, "only_deleted": missing})
            print(f"  filled rows {first:,}..{last:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        # Autovacuum would do this soon after a real fill: fresh statistics for the planner
        # and the visibility map for index-only scans.
        cursor.execute("VACUUM ANALYZE djtasks_taskresult")
    print(f"filled in {time.perf_counter() - started:.1f} s")


def superuser_client():
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", password="bench")
    client = Client()
    client.force_login(user)
    return client


def time_page(client, url: str, runs: int) -> tuple[list[float], list[dict]]:
    """Render ``url`` ``runs`` times after a warm-up; return the times and one run's queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    queries = list(captured.captured_queries)  # read from the log, which the next request clears
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return times, queries


def bulk_post(client, queue: str, action: str, extra: dict) -> Callable[[], object]:
    """Return a call that posts ``action`` on a "select all" of the rows in ``queue``."""
    from djtasks.models import TaskResult

    one = TaskResult.objects.filter(queue=queue).values_list("pk", flat=True).first()
    data = {"action": action, "select_across": "1", "_selected_action": [one], **extra}

    def post() -> object:
        response = client.post(f"{LIST}?queue__exact={queue}", data)
        assert response.status_code in (200, 302), response.status_code
        return response

    return post


def measure(call: Callable[[], object]) -> tuple[float, float]:
    """Return (seconds untraced, peak MiB under tracemalloc); ``call`` runs twice."""
    started = time.perf_counter()
    call()
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    call()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20


def bulk_actions(client, rows: int) -> None:
    from djtasks.models import RevokedTask, TaskResult

    revoke = bulk_post(client, "bulk-revoke", "revoke_tasks", {"index": "0"})
    elapsed, peak = measure(revoke)
    revoked = RevokedTask.objects.filter(task_id__startswith="bench-").count()
    print(f"bulk revoke, select all of queue bulk-revoke: {elapsed:.1f} s, peak {peak:.1f} MiB "
          f"(traced run), {revoked:,} ids revoked")

    confirm = bulk_post(client, "bulk-delete", "delete_selected", {"index": "0"})
    started = time.perf_counter()
    page = confirm().content.decode()
    assert "djtasks-delete-count" in page
    print(f"bulk delete confirmation page: {(time.perf_counter() - started) * 1000:.0f} ms")
    delete = bulk_post(client, "bulk-delete", "delete_selected", {"post": "yes"})

    def delete_and_check() -> None:
        before = TaskResult.objects.filter(queue="bulk-delete").count()
        delete()
        assert not TaskResult.objects.filter(queue="bulk-delete").exists()
        print(f"  deleted {before:,} rows")

    started = time.perf_counter()
    delete_and_check()
    elapsed = time.perf_counter() - started
    fill(rows)
    tracemalloc.start()
    delete_and_check()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    fill(rows)
    print(f"bulk delete, select all of queue bulk-delete: {elapsed:.1f} s, peak {peak / 2**20:.1f} MiB "
          "(traced run)")


def explain(queries: list[dict]) -> None:
    """Print how PostgreSQL ran each of the page's queries on TaskResult: scans and time."""
    from django.db import connection

    for query in queries:
        if "djtasks_taskresult" not in query["sql"] or query["sql"].startswith("EXPLAIN"):
            continue
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query['sql']}")
            plan = cursor.fetchone()[0][0]
        scans = sorted(scans_of(plan["Plan"]))
        print(f"    {plan['Execution Time']:7.1f} ms  {', '.join(scans) or '-'}  "
              f"{' '.join(query['sql'].split())[:90]}")


def scans_of(node: dict) -> set[str]:
    found = set()
    if "Scan" in node["Node Type"]:
        found.add(f"{node['Node Type']}" + (f" on {node['Index Name']}" if "Index Name" in node else ""))
    for child in node.get("Plans", []):
        found |= scans_of(child)
    return found


def pages() -> dict[str, str]:
    """The pages timed: ``PAGES`` and the date filter's "Past 7 days", as of today (UTC)."""
    from datetime import timedelta
    from urllib.parse import urlencode

    from django.utils import timezone

    # As DateFieldListFilter writes its links: midnight today (UTC), a week back, tomorrow.
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    week = f"{LIST}?" + urlencode({"date_created__gte": str(today - timedelta(days=7)),
                                   "date_created__lt": str(today + timedelta(days=1))})
    return {**PAGES, "changelist, created in the past 7 days": week}


def django_delete_confirmation(queue: str) -> None:
    """Time Django's own delete_selected asking about a "select all" of ``queue`` (no delete)."""
    from django.contrib import admin
    from django.contrib.admin.actions import delete_selected as django_delete_selected
    from django.contrib.auth.models import User
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.test import RequestFactory

    from djtasks.models import TaskResult

    request = RequestFactory().post(f"{LIST}?queue__exact={queue}", {"action": "delete_selected"})
    request.user = User.objects.get(username="bench")
    request.session = {}
    request._messages = FallbackStorage(request)
    model_admin = admin.site._registry[TaskResult]
    queryset = TaskResult.objects.filter(queue=queue)
    started = time.perf_counter()
    tracemalloc.start()
    django_delete_selected(model_admin, request, queryset).render()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"Django's delete_selected, confirmation page only, select all of queue {queue}: "
          f"{time.perf_counter() - started:.1f} s, peak {peak / 2**20:.0f} MiB (traced)")


def report_pages(client, runs: int, show_plans: bool) -> None:
    for label, url in pages().items():
        times, queries = time_page(client, url, runs)
        slowest = max(queries, key=lambda query: float(query["time"]))
        print(f"{label}: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms, "
              f"{len(queries)} queries, slowest {float(slowest['time']) * 1000:.0f} ms: "
              f"{' '.join(slowest['sql'].split())[:160]}")
        if show_plans:
            explain(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--refill", action="store_true", help="fill the table again even if full")
    parser.add_argument("--skip-bulk", action="store_true", help="only time the pages")
    parser.add_argument("--django-delete", action="store_true",
                        help="also time Django's own delete_selected confirmation on the same rows")
    parser.add_argument("--explain", action="store_true",
                        help="print how PostgreSQL ran each query of each page (EXPLAIN ANALYZE)")
    arguments = parser.parse_args()
    create_database(DATABASE)
    configure(DATABASE)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    fill(arguments.rows, again=arguments.refill)
    client = superuser_client()
    report_pages(client, arguments.runs, arguments.explain)
    if arguments.django_delete:
        django_delete_confirmation("bulk-delete")
    if not arguments.skip_bulk:
        bulk_actions(client, arguments.rows)


if __name__ == "__main__":
    main()
