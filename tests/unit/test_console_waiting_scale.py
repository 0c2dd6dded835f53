"""The lists of waiting work and dead letters at scale, on PostgreSQL: no scan per page.

Each page of a list runs its count, its filter choices and its page of rows; none of them
may read the whole table (the queue table is the busiest one of a django:// broker).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from djtasks.admin.pagination import ESTIMATE_ABOVE
from djtasks.models import DeadLetter, ParkedMessage, QueueMessage

pytestmark = pytest.mark.django_db(databases=["default", "postgres"])

ROWS = ESTIMATE_ABOVE + 500


def analyze(table: str) -> None:
    with connections["postgres"].cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")


def page_queries(admin_client, url: str) -> list[str]:
    with CaptureQueriesContext(connections["postgres"]) as captured:
        response = admin_client.get(url)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def plan_nodes(sql: str) -> list[str]:
    """The node types of PostgreSQL's plan for ``sql`` (EXPLAIN only: nothing runs)."""
    with connections["postgres"].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node["Node Type"])
        todo.extend(node.get("Plans", ()))
    return nodes


def assert_no_scan_per_page(queries: list[str], table: str) -> None:
    assert not [sql for sql in queries if "DISTINCT" in sql], "filter choices by SELECT DISTINCT"
    assert not [sql for sql in queries if re.search(r"\bCOUNT\(", sql) and " WHERE " not in sql
                and "LIMIT" not in sql], "an exact COUNT(*) over the table"
    # The page of rows (the loose scans of the filters start WITH, the estimate EXPLAIN).
    (rows,) = [sql for sql in queries if sql.startswith("SELECT") and f'FROM "{table}"' in sql
               and "LIMIT 100" in sql and "COUNT(" not in sql]
    nodes = plan_nodes(rows)
    assert "Sort" not in nodes, (rows, nodes)
    assert "Seq Scan" not in nodes, (rows, nodes)


def test_the_queue_message_list_reads_its_page_by_the_fetch_index(admin_client):
    now = timezone.now()
    QueueMessage.objects.using("postgres").bulk_create(
        [QueueMessage(queue=f"q-{n % 3}", payload="{}", priority=n % 2, visible_at=now,
                      created_at=now) for n in range(ROWS)], batch_size=2000)
    analyze("djtasks_queuemessage")
    with override_settings(DJTASKS={"broker_url": "django://postgres"}):
        for url in ("/admin/djtasks/queuemessage/", "/admin/djtasks/queuemessage/?queue=q-1"):
            queries = page_queries(admin_client, url)
            assert_no_scan_per_page(queries, "djtasks_queuemessage")


@pytest.fixture
def models_on_postgres(monkeypatch):
    monkeypatch.setenv("DJTASKS_TESTS_MODELS_DB", "postgres")


@pytest.mark.usefixtures("models_on_postgres")
def test_the_parked_message_list_reads_its_page_by_the_eta_index(admin_client):
    eta = timezone.now() + timedelta(hours=1)
    ParkedMessage.objects.using("postgres").bulk_create(
        [ParkedMessage(task_id=f"p-{n}", task_name="tests.testapp.tasks.add", queue=f"q-{n % 3}",
                       eta=eta + timedelta(seconds=n), content_type="application/json",
                       body=b"[]") for n in range(ROWS)], batch_size=2000)
    analyze("djtasks_parkedmessage")
    assert_no_scan_per_page(page_queries(admin_client, "/admin/djtasks/parkedmessage/"),
                            "djtasks_parkedmessage")


@pytest.mark.usefixtures("models_on_postgres")
def test_the_dead_letter_list_reads_its_page_by_the_date_index(admin_client):
    now = timezone.now()
    DeadLetter.objects.using("postgres").bulk_create(
        [DeadLetter(task_id=f"d-{n}", task_name="tests.testapp.tasks.add", queue=f"q-{n % 3}",
                    worker=f"w{n % 2}", deliveries=3, reason="r",
                    date_created=now - timedelta(seconds=n)) for n in range(ROWS)], batch_size=2000)
    analyze("djtasks_deadletter")
    assert_no_scan_per_page(page_queries(admin_client, "/admin/djtasks/deadletter/"),
                            "djtasks_deadletter")
