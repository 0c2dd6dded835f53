"""Task results in the admin: badges, revoke and retry behind permission, CSRF and history."""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client, override_settings

from djtasks import states
from djtasks.models import QueueMessage, RevokedTask, TaskResult
from tests.unit.console_users import staff_client

pytestmark = [pytest.mark.django_db]

LIST = "/admin/djtasks/taskresult/"


def change_url(row: TaskResult) -> str:
    return f"{LIST}{row.pk}/change/"


def action_url(row: TaskResult, name: str) -> str:
    return f"{LIST}{row.pk}/action/{name}/"


@pytest.fixture(autouse=True)
def django_broker():
    with override_settings(DJTASKS={"broker_url": "django://default", "task_default_queue": "q-a"}):
        yield


def result(status: str, **fields) -> TaskResult:
    fields.setdefault("task_id", f"id-{status.lower()}")
    return TaskResult.objects.create(task_name="tests.testapp.tasks.add", status=status, **fields)


def staff(*codenames: str, csrf: bool = False) -> Client:
    return staff_client("view_taskresult", *codenames, csrf=csrf)


def test_the_list_shows_the_state_as_a_badge(admin_client):
    result(states.FAILURE)
    page = admin_client.get(LIST).content.decode()
    assert 'class="djtasks-state djtasks-state-FAILURE"' in page


def test_a_pending_task_offers_revoke_and_a_failed_one_retry(admin_client):
    pending, failed = result(states.PENDING), result(states.FAILURE, args=[1], kwargs={})
    pending_page = admin_client.get(change_url(pending)).content.decode()
    assert 'id="djtasks-action-revoke"' in pending_page
    assert 'id="djtasks-action-retry"' not in pending_page
    failed_page = admin_client.get(change_url(failed)).content.decode()
    assert 'id="djtasks-action-retry"' in failed_page
    assert 'id="djtasks-action-revoke"' not in failed_page


def test_revoke_marks_the_task_revoked_for_every_worker_and_writes_history(admin_client):
    pending = result(states.PENDING)
    response = admin_client.post(action_url(pending, "revoke"), follow=True)
    assert "Revoked task id-pending" in response.content.decode()
    assert RevokedTask.objects.filter(task_id="id-pending").exists()
    entry = LogEntry.objects.get()
    assert entry.object_id == str(pending.pk)
    assert "Revoked task id-pending" in entry.change_message


def test_retry_sends_the_stored_arguments_again_to_the_same_queue(admin_client):
    failed = result(states.FAILURE, args=[2, 3], kwargs={}, queue="q-b")
    response = admin_client.post(action_url(failed, "retry"), follow=True)
    assert "retry of id-failure" in response.content.decode()
    payload = json.loads(QueueMessage.objects.get(queue="q-b").payload)
    assert payload["headers"]["task"] == "tests.testapp.tasks.add"
    assert payload["headers"]["id"] != "id-failure"
    body = payload["body"]
    if payload["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    assert json.loads(body)[:2] == [[2, 3], {}]
    assert LogEntry.objects.filter(change_message__contains="retry of id-failure").exists()


def test_retry_is_refused_when_the_arguments_were_not_stored(admin_client):
    failed = result(states.FAILURE)
    response = admin_client.post(action_url(failed, "retry"), follow=True)
    assert "its arguments were not stored" in response.content.decode()
    assert not QueueMessage.objects.exists()
    assert not LogEntry.objects.exists()


def test_staff_without_the_permissions_sees_no_action_and_gets_403():
    pending, failed = result(states.PENDING), result(states.FAILURE, args=[1], kwargs={})
    client = staff()
    page = client.get(change_url(pending)).content.decode()
    assert "djtasks-action-" not in page
    assert client.post(action_url(pending, "revoke")).status_code == 403
    assert client.post(action_url(failed, "retry")).status_code == 403
    assert not RevokedTask.objects.exists()
    changelist = client.get(LIST).content.decode()
    assert "revoke_tasks" not in changelist


def test_a_staff_user_with_revoke_may_revoke():
    pending = result(states.PENDING)
    client = staff("revoke_taskresult")
    assert 'id="djtasks-action-revoke"' in client.get(change_url(pending)).content.decode()
    assert client.post(action_url(pending, "revoke")).status_code == 302
    assert RevokedTask.objects.filter(task_id="id-pending").exists()


def test_a_post_without_the_csrf_token_is_refused():
    pending = result(states.PENDING)
    client = staff("revoke_taskresult", csrf=True)
    assert client.post(action_url(pending, "revoke")).status_code == 403
    assert not RevokedTask.objects.exists()


def test_script_in_arguments_and_traceback_renders_as_text(admin_client):
    failed = result(states.FAILURE, task_args="('<script>alert(1)</script>',)",
                    traceback="Traceback: <script>alert(2)</script>")
    page = admin_client.get(change_url(failed)).content.decode()
    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_the_bulk_revoke_of_a_select_all_revokes_the_unfinished_rows_only(admin_client):
    for number in range(5):
        result(states.PENDING, task_id=f"p-{number}")
    result(states.SUCCESS, task_id="done")
    response = admin_client.post(LIST, {"action": "revoke_tasks", "select_across": "1",
                                        "index": "0", "_selected_action": ["x"]}, follow=True)
    assert "Revoked 5 task(s)." in response.content.decode()
    assert set(RevokedTask.objects.values_list("task_id", flat=True)) == {f"p-{n}" for n in range(5)}
    assert LogEntry.objects.get().change_message == "Revoked 5 task(s)."
