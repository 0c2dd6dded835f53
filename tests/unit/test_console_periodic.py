"""Periodic tasks in the admin: run now as beat sends, schedules in words, last and next run."""

from __future__ import annotations

import base64
import json
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client, override_settings
from django.utils import timezone

import djtasks
from djtasks import states
from djtasks.beat.scheduler import DatabaseScheduler
from djtasks.models import CrontabSchedule, IntervalSchedule, PeriodicTask, QueueMessage, TaskResult
from tests.unit.console_users import staff_client

pytestmark = [pytest.mark.django_db]

LIST = "/admin/djtasks/periodictask/"


def change_url(row: PeriodicTask) -> str:
    return f"{LIST}{row.pk}/change/"


def run_now_url(row: PeriodicTask) -> str:
    return f"{LIST}{row.pk}/action/run_now/"


@pytest.fixture(autouse=True)
def django_broker():
    with override_settings(DJTASKS={"broker_url": "django://default", "task_default_queue": "q-a"}):
        yield


def hourly(name: str = "report", **fields) -> PeriodicTask:
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    fields.setdefault("task", "tests.testapp.tasks.add")
    return PeriodicTask.objects.create(name=name, interval=interval, args=[2, 3],
                                       kwargs={}, **fields)


def nightly(name: str = "nightly", **cron) -> PeriodicTask:
    crontab = CrontabSchedule.objects.create(**{"minute": "0", "hour": "3", **cron})
    return PeriodicTask.objects.create(name=name, task="tests.testapp.tasks.add", crontab=crontab)


def messages_in(queue: str) -> list[dict]:
    """The messages waiting in ``queue``, decoded: headers, properties and (args, kwargs)."""
    decoded = []
    for row in QueueMessage.objects.filter(queue=queue).order_by("pk"):
        payload = json.loads(row.payload)
        body = payload["body"]
        if payload["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        decoded.append({**payload, "body": json.loads(body)})
    return decoded


def staff(*codenames: str, csrf: bool = False) -> Client:
    return staff_client("view_periodictask", *codenames, csrf=csrf)


def test_run_now_sends_one_run_with_its_arguments_and_routing_and_logs_who(admin_client):
    row = hourly(queue="q-reports", priority=4, headers={"source": "console"})
    response = admin_client.post(run_now_url(row), follow=True)
    page = response.content.decode()
    assert "(run now of report by admin)" in page
    [message] = messages_in("q-reports")
    assert message["headers"]["task"] == "tests.testapp.tasks.add"
    assert message["body"][:2] == [[2, 3], {}]
    assert message["properties"]["priority"] == 4
    assert message["headers"]["source"] == "console"
    entry = LogEntry.objects.get()
    assert (entry.user.username, entry.object_id) == ("admin", str(row.pk))
    assert message["headers"]["id"] in entry.change_message
    row.refresh_from_db()
    assert row.last_task_id == message["headers"]["id"]
    assert (row.last_run_at, row.total_run_count) == (None, 0), "the schedule is beat's"


def test_run_now_sends_the_message_beat_sends(admin_client):
    row = hourly(queue="q-same", expire_seconds=600, headers={"x": "1"})
    DatabaseScheduler(djtasks.app, holder="unit").tick()
    admin_client.post(run_now_url(row))
    by_beat, by_hand = messages_in("q-same")
    varying = {"id", "root_id", "expires"}

    def same_part(message: dict) -> tuple:
        headers = {key: value for key, value in message["headers"].items() if key not in varying}
        properties = {key: value for key, value in message["properties"].items()
                      if key not in {"correlation_id", "delivery_tag"}}
        return headers, properties, message["body"]

    assert same_part(by_beat) == same_part(by_hand)
    assert by_hand["headers"]["expires"] is not None


def test_run_now_of_an_expired_task_is_refused_and_sends_nothing(admin_client):
    row = hourly(expires=timezone.now() - timedelta(minutes=1))
    response = admin_client.post(run_now_url(row), follow=True)
    assert "beat sends no run of it" in response.content.decode()
    assert not QueueMessage.objects.exists()
    assert not LogEntry.objects.exists()


def test_staff_without_the_permission_sees_no_run_now_and_gets_403():
    row = hourly()
    client = staff()
    page = client.get(change_url(row)).content.decode()
    assert "djtasks-action-" not in page
    assert client.post(run_now_url(row)).status_code == 403
    assert not QueueMessage.objects.exists()
    changelist = client.get(LIST).content.decode()
    assert 'value="enable"' not in changelist
    assert 'value="disable"' not in changelist


def test_a_staff_user_with_the_permission_runs_it_now_in_one_click():
    row = hourly()
    client = staff("run_periodictask")
    page = client.get(change_url(row)).content.decode()
    assert 'id="djtasks-action-run_now"' in page
    assert 'class="djtasks-action-form"' in page  # a direct POST, no confirmation page
    assert client.post(run_now_url(row)).status_code == 302
    assert QueueMessage.objects.count() == 1


def test_a_post_without_the_csrf_token_is_refused():
    row = hourly()
    client = staff("run_periodictask", csrf=True)
    assert client.post(run_now_url(row)).status_code == 403
    assert not QueueMessage.objects.exists()


def test_a_get_sends_nothing(admin_client):
    row = hourly()
    assert admin_client.get(run_now_url(row)).status_code == 200
    assert not QueueMessage.objects.exists()


def test_the_list_shows_the_schedule_in_words_and_the_next_run(admin_client):
    nightly(day_of_week="1")
    hourly(last_run_at=timezone.now() - timedelta(hours=2))
    hourly(name="off", enabled=False)
    page = admin_client.get(LIST).content.decode()
    assert "at 03:00 on Monday (UTC)" in page
    assert "every 1 hours" in page
    assert "due now" in page
    assert "disabled" in page


def test_the_next_run_of_a_crontab_is_its_next_time_in_utc(admin_client):
    row = nightly(hour="3", timezone="Europe/London")
    page = admin_client.get(change_url(row)).content.decode()
    assert "at 03:00 (Europe/London)" in page
    now = timezone.now()
    london = now.astimezone(ZoneInfo("Europe/London"))
    expected = london.replace(hour=3, minute=0, second=0, microsecond=0)
    if expected <= london:
        expected += timedelta(days=1)
    assert expected.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") in page


def test_the_last_run_links_to_its_result(admin_client):
    row = hourly(last_task_id="the-last-run")
    result = TaskResult.objects.create(task_id="the-last-run", task_name=row.task,
                                       status=states.SUCCESS)
    link = f'href="/admin/djtasks/taskresult/{result.pk}/change/"'
    assert link in admin_client.get(LIST).content.decode()
    assert link in admin_client.get(change_url(row)).content.decode()


def test_a_last_run_without_a_result_yet_says_so(admin_client):
    hourly(last_task_id="sent-not-run")
    assert "sent-not-run (no result yet)" in admin_client.get(LIST).content.decode()


def test_script_in_names_and_ids_renders_as_text(admin_client):
    row = hourly(name="<script>alert(1)</script>", last_task_id="<script>alert(2)</script>")
    for url in (LIST, change_url(row)):
        page = admin_client.get(url).content.decode()
        assert "<script>alert(" not in page
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_bulk_enable_and_disable_write_history(admin_client):
    first, second = hourly("a"), hourly("b")
    selected = {"_selected_action": [first.pk, second.pk], "index": "0"}
    admin_client.post(LIST, {"action": "disable", **selected})
    assert not PeriodicTask.objects.filter(enabled=True).exists()
    admin_client.post(LIST, {"action": "enable", **selected})
    assert PeriodicTask.objects.filter(enabled=True).count() == 2
    assert list(LogEntry.objects.order_by("pk").values_list("change_message", flat=True)) == [
        "2 periodic task(s) disabled.", "2 periodic task(s) enabled."]
