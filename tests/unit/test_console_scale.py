"""The TaskResult list at scale: estimated counts, indexed filter choices, the batched delete."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from djtasks import states
from djtasks.admin.bulk_delete import delete_in_batches
from djtasks.admin.filters import distinct_values
from djtasks.admin.pagination import ESTIMATE_ABOVE, EstimatedCountPaginator
from djtasks.dashboard import stats
from djtasks.models import TaskResult
from tests.unit.console_users import staff_client

LIST = "/admin/djtasks/taskresult/"
BOTH = pytest.mark.django_db(databases=["default", "postgres"])


def fill(count: int, using: str = "default", **fields) -> None:
    prefix = fields.pop("prefix", "t")
    fields.setdefault("task_name", "tests.testapp.tasks.add")
    TaskResult.objects.using(using).bulk_create(
        [TaskResult(task_id=f"{prefix}-{index}", **fields) for index in range(count)], batch_size=2000)


def analyze(using: str = "postgres") -> None:
    # ANALYZE inside the test's transaction counts the rows it inserted as live.
    with connections[using].cursor() as cursor:
        cursor.execute("ANALYZE djtasks_taskresult")


def counts_without_where(queries: list[dict]) -> list[str]:
    return [query["sql"] for query in queries
            if re.search(r"\bCOUNT\(", query["sql"], re.IGNORECASE) and " WHERE " not in query["sql"]]


@pytest.fixture
def models_on_postgres(monkeypatch):
    """Send djtasks' model queries, the admin's included, to the PostgreSQL test database."""
    monkeypatch.setenv("DJTASKS_TESTS_MODELS_DB", "postgres")


@BOTH
def test_above_the_threshold_postgres_counts_by_the_planner_not_by_count():
    fill(ESTIMATE_ABOVE + 500, "postgres")
    analyze()
    paginator = EstimatedCountPaginator(TaskResult.objects.using("postgres").all(), 100)
    with CaptureQueriesContext(connections["postgres"]) as captured:
        count = paginator.count
    assert paginator.estimated
    assert count == ESTIMATE_ABOVE + 500  # ANALYZE of a small table reads every row
    assert [query["sql"].split()[0] for query in captured.captured_queries] == ["EXPLAIN"]


@BOTH
def test_below_the_threshold_postgres_counts_exactly():
    fill(40, "postgres")
    analyze()
    paginator = EstimatedCountPaginator(TaskResult.objects.using("postgres").all(), 10)
    assert paginator.count == 40
    assert not paginator.estimated


@BOTH
def test_an_estimate_far_too_low_stops_the_exact_count_at_its_cap():
    fill(20, "postgres", status=states.SUCCESS)
    analyze()  # the statistics now say: no FAILURE at all
    fill(300, "postgres", status=states.FAILURE, prefix="f")

    class Capped(EstimatedCountPaginator):
        exact_up_to = 100

    paginator = Capped(TaskResult.objects.using("postgres").filter(status=states.FAILURE), 10)
    assert paginator.count >= 100
    assert paginator.estimated


@BOTH
def test_a_filter_that_matches_nothing_by_construction_counts_zero():
    fill(3, "postgres")
    paginator = EstimatedCountPaginator(TaskResult.objects.using("postgres").filter(pk__in=[]), 10)
    assert paginator.count == 0
    assert not paginator.estimated


@pytest.mark.django_db
def test_sqlite_always_counts_exactly():
    fill(30)

    class Low(EstimatedCountPaginator):
        estimate_above = 5

    paginator = Low(TaskResult.objects.all(), 10)
    assert paginator.count == 30
    assert not paginator.estimated


@BOTH
@pytest.mark.usefixtures("models_on_postgres")
def test_the_changelist_on_postgres_runs_no_count_over_the_table_and_says_about(admin_client):
    fill(ESTIMATE_ABOVE + 500, "postgres", queue="q-a", worker="w@1")
    fill(2, "postgres", queue="q-b", prefix="b")
    analyze()
    pages = {}
    for url in (LIST, f"{LIST}?status__exact=PENDING", f"{LIST}?q=tests.testapp"):
        with CaptureQueriesContext(connections["postgres"]) as captured:
            page = pages[url] = admin_client.get(url).content.decode()
        assert counts_without_where(captured.captured_queries) == [], url
        assert not [query["sql"] for query in captured.captured_queries
                    if "DISTINCT" in query["sql"]], url
        assert re.search(r'class="djtasks-result-count">about \d+', page), url
    assert re.search(r"Select all about \d+ task results", pages[LIST])
    # The loose scan found the filter's values.
    assert 'href="?queue=q-a"' in pages[LIST]
    assert 'href="?queue=q-b"' in pages[LIST]


@pytest.mark.django_db
def test_the_filters_offer_each_value_once_with_data_escaped(admin_client):
    fill(3, queue="<script>alert(1)</script>")
    fill(2, queue="q-b", prefix="b")
    page = admin_client.get(LIST).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('href="?queue=q-b"') == 1


@BOTH
@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_distinct_values_walk_the_column_in_order_up_to_the_limit(alias):
    for name in ("b", "a", "c"):
        fill(5, alias, worker=f"w-{name}", prefix=name)
    field = TaskResult._meta.get_field("worker")
    assert distinct_values(TaskResult, field, alias) == ["w-a", "w-b", "w-c"]
    assert distinct_values(TaskResult, field, alias, limit=2) == ["w-a", "w-b"]


@pytest.mark.django_db
def test_the_search_matches_a_name_prefix_and_an_exact_id(admin_client):
    fill(1, task_name="app.tasks.send_mail", prefix="mail")
    fill(1, task_name="app.tasks.resize", prefix="img")
    by_name = admin_client.get(LIST, {"q": "app.tasks.send"}).content.decode()
    assert "mail-0" in by_name
    assert "img-0" not in by_name
    assert "img-0" in admin_client.get(LIST, {"q": "img-0"}).content.decode()


def select_all(queue: str, **extra) -> tuple[str, dict]:
    one = TaskResult.objects.filter(queue=queue).values_list("pk", flat=True).first()
    return f"{LIST}?queue__exact={queue}", {"action": "delete_selected", "select_across": "1",
                                            "_selected_action": [one], **extra}


@pytest.mark.django_db
def test_delete_asks_first_with_the_count_of_the_selection(admin_client):
    fill(12, queue="q-a")
    url, data = select_all("q-a", index="0")
    page = admin_client.post(url, data).content.decode()
    assert '<strong id="djtasks-delete-count">12</strong>' in page
    assert 'name="post" value="yes"' in page
    assert TaskResult.objects.count() == 12


@pytest.mark.django_db
def test_a_confirmed_select_all_deletes_exactly_the_filtered_rows_and_logs_once(admin_client):
    fill(12, queue="q-a")
    fill(5, queue="q-b", prefix="b")
    url, data = select_all("q-a", post="yes")
    response = admin_client.post(url, data, follow=True)
    assert "Deleted 12 task results." in response.content.decode()
    assert set(TaskResult.objects.values_list("queue", flat=True)) == {"q-b"}
    assert TaskResult.objects.count() == 5
    entry = LogEntry.objects.get()
    assert entry.change_message == "Deleted 12 task results."
    assert entry.object_id is None


@pytest.mark.django_db
def test_a_confirmed_delete_of_checked_rows_deletes_only_those(admin_client):
    fill(6)
    chosen = list(TaskResult.objects.order_by("pk").values_list("pk", flat=True)[:2])
    admin_client.post(LIST, {"action": "delete_selected", "post": "yes", "_selected_action": chosen})
    assert not TaskResult.objects.filter(pk__in=chosen).exists()
    assert TaskResult.objects.count() == 4


@pytest.mark.django_db
def test_the_batched_delete_walks_every_batch():
    fill(10, queue="q-a")
    fill(3, queue="q-b", prefix="b")
    assert delete_in_batches(TaskResult.objects.filter(queue="q-a"), size=3) == 10
    assert TaskResult.objects.count() == 3


@pytest.mark.django_db
def test_staff_without_delete_permission_gets_no_delete_action():
    fill(4, queue="q-a")
    client = staff_client("view_taskresult")
    assert 'value="delete_selected"' not in client.get(LIST).content.decode()
    url, data = select_all("q-a", post="yes")
    client.post(url, data)
    assert TaskResult.objects.count() == 4
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_staff_with_delete_permission_is_offered_the_batched_delete():
    fill(4, queue="q-a")
    client = staff_client("view_taskresult", "delete_taskresult")
    assert 'value="delete_selected"' in client.get(LIST).content.decode()
    url, data = select_all("q-a", post="yes")
    client.post(url, data)
    assert TaskResult.objects.count() == 0


@BOTH
@pytest.mark.parametrize("step", [timedelta(minutes=1), timedelta(hours=1)], ids=["minutes", "hours"])
def test_the_dashboard_counts_by_index_range_as_grouping_by_time_does(step):
    now = timezone.now()
    for index in range(40):
        TaskResult.objects.using("postgres").create(
            task_id=f"c-{index}", status=[states.SUCCESS, states.FAILURE, states.RETRY][index % 3],
            date_done=now - index * step / 3)
    first = stats.trunc_python(now - 20 * step, step)
    # Every (bucket, series) is there, empty ones as 0; grouping finds only the others.
    by_range = {key: count for key, count in stats.counts_by_range("postgres", first, now, step).items()
                if count}
    assert by_range == stats.counts_by_trunc("postgres", first, now, step)
    assert sum(by_range.values()) == sum(1 for index in range(40) if now - index * step / 3 >= first)
