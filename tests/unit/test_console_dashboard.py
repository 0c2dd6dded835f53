"""The admin dashboard: workers, depths, charts, failures escaped, the fragment and its permission."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.utils import timezone

from djtasks import states
from djtasks.dashboard import stats
from djtasks.models import TaskResult, Worker
from djtasks.models.workers import lost_after

pytestmark = [pytest.mark.django_db]

URL = "/admin/djtasks/dashboard/"


@pytest.fixture(autouse=True)
def django_broker():
    with override_settings(DJTASKS={"broker_url": "django://default", "task_default_queue": "dash"}):
        yield


def add_worker(hostname: str, seconds_ago: float, status: str = "online") -> Worker:
    beat = timezone.now() - timedelta(seconds=seconds_ago)
    return Worker.objects.create(hostname=hostname, pool="threads", concurrency=4, queues=["dash", "mail"],
                                 started=beat, last_heartbeat=beat, heartbeat_interval=2.0,
                                 lost_after=lost_after(beat, 2.0), written_status=status, active=1)


def add_result(task_id: str, status: str, minutes_ago: float, **fields) -> TaskResult:
    return TaskResult.objects.create(task_id=task_id, status=status,
                                     date_done=timezone.now() - timedelta(minutes=minutes_ago), **fields)


def test_the_dashboard_shows_workers_queues_and_results(admin_client):
    add_worker("w-online", 1)
    add_worker("w-lost", 60)
    add_worker("w-off", 1, status="offline")
    add_result("a", states.SUCCESS, 2, task_name="fast", runtime=0.5)
    add_result("b", states.FAILURE, 3, task_name="broken",
               result={"exc_type": "ValueError", "exc_message": "<script>alert(1)</script>"})
    page = admin_client.get(URL).content.decode()
    assert 'id="djtasks-workers"' in page
    assert '<tr data-worker="w-online" data-status="online">' in page
    assert '<tr data-worker="w-lost" data-status="lost">' in page
    assert '<tr data-worker="w-off" data-status="offline">' in page
    assert '<tr data-queue="dash">' in page
    assert '<tr data-queue="mail">' in page
    assert '<td class="waiting">0</td>' in page
    assert "<svg" in page
    assert 'id="djtasks-pause"' in page
    assert "broken" in page
    assert "fast" in page
    assert "<script>alert(1)</script>" not in page
    assert "ValueError: &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_dashboard_counts_waiting_messages_on_django(admin_client):
    import djtasks

    djtasks.app.send_task("some.task", queue="dash")
    djtasks.app.send_task("some.task", queue="dash")
    page = admin_client.get(URL).content.decode()
    row = page.split('<tr data-queue="dash">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="waiting">2</td>' in row
    assert '<td class="unacked">0</td>' in row


def test_fragment_mode_draws_only_the_swapped_part(admin_client):
    page = admin_client.get(URL, {"fragment": "1"}).content.decode()
    assert 'id="djtasks-workers"' in page
    assert "<html" not in page
    assert 'id="djtasks-pause"' not in page


def test_a_broker_error_is_shown_without_credentials(admin_client):
    with override_settings(DJTASKS={"broker_url": "amqp://user:s3cret@127.0.0.1:1//"}):
        response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "broker unreachable:" in page
    assert "s3cret" not in page


def test_staff_without_view_dashboard_gets_403_and_with_it_200():
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(User.objects.get(pk=user.pk))
    assert client.get(URL).status_code == 200


def test_the_admin_index_links_the_dashboard(admin_client):
    assert URL in admin_client.get("/admin/").content.decode()


def test_throughput_buckets_count_each_state_in_its_minute():
    add_result("s1", states.SUCCESS, 1.5)
    add_result("s2", states.SUCCESS, 1.5)
    add_result("f1", states.FAILURE, 1.5)
    add_result("r1", states.RETRY, 1.5)
    add_result("old", states.SUCCESS, 120)
    buckets = stats.throughput("default", timezone.now(), timedelta(hours=1), timedelta(minutes=1))
    assert len(buckets) == 60
    assert sum(b.succeeded for b in buckets) == 2
    assert sum(b.failed for b in buckets) == 1
    assert sum(b.retried for b in buckets) == 1


def test_percentiles_fallback_interpolates_like_percentile_cont():
    for index, runtime in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):
        add_result(f"p{index}", states.SUCCESS, 5, task_name="slow", runtime=runtime)
    [row] = stats.slowest("default", timezone.now() - timedelta(days=1))
    assert row["p50"] == 3.0
    assert row["p95"] == pytest.approx(80.8)


@pytest.mark.django_db(databases=["default", "postgres"])
def test_percentiles_on_postgres_use_percentile_cont_and_charts_count_on_postgres():
    for index, runtime in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):
        TaskResult.objects.using("postgres").create(
            task_id=f"pg{index}", task_name="slow", status=states.SUCCESS, runtime=runtime,
            date_done=timezone.now() - timedelta(minutes=5))
    TaskResult.objects.using("postgres").create(task_id="pgr", status=states.RETRY,
                                                date_done=timezone.now() - timedelta(minutes=5))
    [row] = stats.slowest("postgres", timezone.now() - timedelta(days=1))
    assert (row["count"], row["p50"]) == (5, 3.0)
    assert row["p95"] == pytest.approx(80.8)
    buckets = stats.throughput("postgres", timezone.now(), timedelta(days=1), timedelta(hours=1))
    assert (sum(b.succeeded for b in buckets), sum(b.retried for b in buckets)) == (5, 1)
