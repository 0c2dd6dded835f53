"""Waiting work in the admin: django:// queue rows and parked ETA messages, revoke by task id."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.test import override_settings

import djtasks
from djtasks import states
from djtasks.models import ParkedMessage, QueueMessage, RevokedTask
from djtasks.models.transport import envelope_of
from djtasks.testing import InProcessWorker
from tests.testapp import tasks
from tests.unit.console_users import staff_client
from tests.unit.memory_broker import drain, run_queued_tasks

WAITING = "/admin/djtasks/queuemessage/"
PARKED = "/admin/djtasks/parkedmessage/"


@pytest.fixture
def django_broker():
    with override_settings(DJTASKS={"broker_url": "django://default", "task_default_queue": "q-w"}):
        yield


@pytest.fixture
def memory_broker():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit"}):
        yield
    drain("unit")


def receive_once() -> None:
    """Let an in-process worker receive what is queued on memory:// (and park it)."""
    with InProcessWorker() as worker:
        while worker.consumer.connection.default_channel.queue_declare("unit", passive=True)[1]:
            worker.consumer.step()


def row_of(task_id: str) -> QueueMessage:
    return next(row for row in QueueMessage.objects.all() if task_id in row.payload)


# -- django:// queue rows ------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.usefixtures("django_broker")
class TestWaitingOnDjangoBroker:
    def test_the_list_shows_task_id_queue_eta_and_countdown(self, admin_client):
        later = tasks.add.apply_async((1, 2), countdown=600)
        now = tasks.add.apply_async((3, 4), queue="q-other")
        page = admin_client.get(WAITING).content.decode()
        assert "Broker: <code>django://default</code>" in page
        assert later.id in page
        assert now.id in page
        assert "tests.testapp.tasks.add" in page
        assert re.search(r"in (59\d|600) s", page), "the countdown left of the later one"
        assert ">q-other<" in page

    def test_search_by_task_id_or_name_and_filter_by_queue(self, admin_client):
        first = tasks.add.apply_async((1, 2), countdown=600)
        second = tasks.mul.apply_async((1, 2), queue="q-other")
        page = admin_client.get(WAITING, {"q": first.id}).content.decode()
        assert first.id in page
        assert second.id not in page
        page = admin_client.get(WAITING, {"q": "tests.testapp.tasks.mul"}).content.decode()
        assert second.id in page
        assert first.id not in page
        page = admin_client.get(WAITING, {"queue": "q-other"}).content.decode()
        assert second.id in page
        assert first.id not in page

    def test_revoke_from_the_page_revokes_the_task(self, admin_client):
        later = tasks.add.apply_async((1, 2), countdown=600)
        row = row_of(later.id)
        page = admin_client.get(f"{WAITING}{row.pk}/change/").content.decode()
        assert 'id="djtasks-action-revoke"' in page
        response = admin_client.post(f"{WAITING}{row.pk}/action/revoke/", follow=True)
        assert f"Revoked task {later.id}" in response.content.decode()
        assert list(RevokedTask.objects.values_list("task_id", flat=True)) == [later.id]
        assert QueueMessage.objects.filter(pk=row.pk).exists(), "it stays, to be skipped when due"
        assert LogEntry.objects.get().object_id == str(row.pk)

    def test_the_bulk_revoke_of_a_select_all_revokes_every_task(self, admin_client):
        ids = {tasks.add.apply_async((n, 1), countdown=600).id for n in range(4)}
        response = admin_client.post(WAITING, {"action": "revoke_tasks", "select_across": "1",
                                               "index": "0", "_selected_action": ["x"]}, follow=True)
        assert "Revoked 4 waiting task(s)." in response.content.decode()
        assert set(RevokedTask.objects.values_list("task_id", flat=True)) == ids

    def test_script_in_a_header_and_a_task_name_renders_as_text(self, admin_client):
        sent = djtasks.app.send_task("<script>alert(1)</script>", args=[],
                                     headers={"note": "<script>alert(2)</script>"})
        list_page = admin_client.get(WAITING).content.decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in list_page
        assert "<script>alert(" not in list_page
        detail = admin_client.get(f"{WAITING}{row_of(sent.id).pk}/change/").content.decode()
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in detail
        assert "<script>alert(" not in detail

    def test_a_sensitive_tasks_body_is_hidden_on_the_page(self, admin_client):
        sent = tasks.secret_add.delay(4242424242, 31313131)
        row = row_of(sent.id)
        body = envelope_of(row.payload)["body"]  # the arguments, encoded (base64)
        page = admin_client.get(f"{WAITING}{row.pk}/change/").content.decode()
        assert "[hidden]" in page
        assert body not in page
        assert sent.id in page  # the headers stay

    def test_staff_without_revoke_sees_no_button_and_gets_403(self):
        later = tasks.add.apply_async((1, 2), countdown=600)
        row = row_of(later.id)
        client = staff_client("view_queuemessage")
        page = client.get(f"{WAITING}{row.pk}/change/").content.decode()
        assert later.id in page
        assert "djtasks-action-" not in page
        assert "revoke_tasks" not in client.get(WAITING).content.decode()
        assert client.post(f"{WAITING}{row.pk}/action/revoke/").status_code == 403
        assert not RevokedTask.objects.exists()

    def test_a_staff_user_with_revoke_may_revoke(self):
        row = row_of(tasks.add.apply_async((1, 2), countdown=600).id)
        client = staff_client("view_queuemessage", "revoke_taskresult")
        assert client.post(f"{WAITING}{row.pk}/action/revoke/").status_code == 302
        assert RevokedTask.objects.count() == 1

    def test_a_revoke_without_the_csrf_token_is_refused(self):
        row = row_of(tasks.add.apply_async((1, 2), countdown=600).id)
        client = staff_client("view_queuemessage", "revoke_taskresult", csrf=True)
        assert client.post(f"{WAITING}{row.pk}/action/revoke/").status_code == 403
        assert not RevokedTask.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("memory_broker")
def test_on_another_broker_the_waiting_list_says_there_are_no_rows(admin_client):
    page = admin_client.get(WAITING).content.decode()
    assert "Broker: <code>memory://</code>" in page
    assert "there are no rows to show here" in page


# -- parked messages -----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_broker")
class TestParked:
    def test_a_parked_countdown_task_is_listed_with_its_due_time(self, admin_client):
        result = tasks.add.apply_async((1, 2), countdown=3600)
        receive_once()
        page = admin_client.get(PARKED).content.decode()
        assert result.id in page
        assert "Broker: <code>memory://</code>" in page
        assert re.search(r"in 3[56]\d\d s", page)
        assert admin_client.get(PARKED, {"q": result.id}).content.decode().count(result.id) >= 1
        assert result.id not in admin_client.get(PARKED, {"q": "other-id"}).content.decode()

    def test_revoked_from_the_parked_list_it_is_skipped_when_due(self, admin_client, tmp_path):
        path = tmp_path / "runs"
        result = tasks.record.apply_async((str(path), "x"), countdown=3)
        receive_once()
        parked = ParkedMessage.objects.get()  # parked, not held: due in more than HOLD
        response = admin_client.post(PARKED, {"action": "revoke_tasks",
                                              "_selected_action": [str(parked.pk)]}, follow=True)
        assert "Revoked 1 waiting task(s)." in response.content.decode()

        run_queued_tasks()  # the release sends it back when due; the worker skips it
        assert not ParkedMessage.objects.exists()
        assert result.state == states.REVOKED
        assert not path.exists(), "the revoked task never ran"

    def test_a_sensitive_tasks_body_is_hidden_on_the_page(self, admin_client):
        tasks.secret_add.apply_async((4242424242, 31313131), countdown=3600)
        receive_once()
        parked = ParkedMessage.objects.get()
        page = admin_client.get(f"{PARKED}{parked.pk}/change/").content.decode()
        assert "[hidden]" in page
        assert "4242424242" not in page

    def test_staff_without_revoke_cannot_revoke_a_parked_task(self):
        tasks.add.apply_async((1, 2), countdown=3600)
        receive_once()
        parked = ParkedMessage.objects.get()
        client = staff_client("view_parkedmessage")
        assert "djtasks-action-" not in client.get(f"{PARKED}{parked.pk}/change/").content.decode()
        assert client.post(f"{PARKED}{parked.pk}/action/revoke/").status_code == 403
        assert not RevokedTask.objects.exists()


@pytest.mark.django_db(databases=["default", "postgres"])
def test_after_a_revoke_on_a_broker_in_another_database_the_page_is_shown_again(admin_client):
    """The rows live in the broker's alias: that is where "is it still there" is asked."""
    with override_settings(DJTASKS={"broker_url": "django://postgres", "task_default_queue": "q-p"}):
        tasks.add.apply_async((1, 2), countdown=600)
        row = QueueMessage.objects.using("postgres").get()
        response = admin_client.post(f"{WAITING}{row.pk}/action/revoke/")
    assert response.status_code == 302
    assert response["Location"] == f"{WAITING}{row.pk}/change/"
