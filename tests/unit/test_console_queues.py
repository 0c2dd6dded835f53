"""The queues page: depths per queue, and purge behind permission, CSRF, confirmation and history."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client, override_settings

import djtasks
from djtasks.models import QueueMessage
from tests.unit.console_users import staff_client

pytestmark = [pytest.mark.django_db]

LIST = "/admin/djtasks/queue/"
PURGE = "/admin/djtasks/queue/{}/purge/"


@pytest.fixture(autouse=True)
def django_broker():
    with override_settings(DJTASKS={"broker_url": "django://default", "task_default_queue": "q-a"}):
        yield


def publish(queue: str, count: int) -> None:
    for _ in range(count):
        djtasks.app.send_task("some.task", queue=queue)


def staff(*codenames: str, csrf: bool = False) -> Client:
    return staff_client("view_queue", *codenames, csrf=csrf)


def test_the_list_shows_each_queue_with_its_depth_and_a_purge_link(admin_client):
    publish("q-a", 3)
    publish("q-b", 1)
    page = admin_client.get(LIST).content.decode()
    row_a = page.split('<tr data-queue="q-a">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="waiting">3</td>' in row_a
    assert f'class="djtasks-purge button" href="{PURGE.format("q-a")}"' in row_a
    assert '<td class="waiting">1</td>' in page.split('<tr data-queue="q-b">', 1)[1].split("</tr>", 1)[0]


def test_the_confirmation_names_the_count_and_post_purges_that_queue_only(admin_client):
    publish("q-a", 12)
    publish("q-b", 2)
    page = admin_client.get(PURGE.format("q-a")).content.decode()
    assert "Purge 12 messages from queue q-a?" in page
    assert 'id="djtasks-action-submit"' in page
    assert QueueMessage.objects.filter(queue="q-a").count() == 12  # GET changes nothing
    response = admin_client.post(PURGE.format("q-a"), follow=True)
    assert response.redirect_chain[-1][0] == LIST
    assert "Purged 12 messages from q-a" in response.content.decode()
    assert QueueMessage.objects.filter(queue="q-a").count() == 0
    assert QueueMessage.objects.filter(queue="q-b").count() == 2
    entry = LogEntry.objects.get()
    assert entry.change_message == "Purged 12 messages from q-a"


def test_staff_without_purge_queue_sees_no_link_and_gets_403():
    publish("q-a", 2)
    client = staff()
    page = client.get(LIST).content.decode()
    assert '<tr data-queue="q-a">' in page
    assert "djtasks-purge" not in page
    assert client.get(PURGE.format("q-a")).status_code == 403
    assert client.post(PURGE.format("q-a")).status_code == 403
    assert QueueMessage.objects.filter(queue="q-a").count() == 2
    assert not LogEntry.objects.exists()


def test_purge_without_csrf_token_is_refused():
    publish("q-a", 2)
    client = staff("purge_queue", csrf=True)
    assert client.post(PURGE.format("q-a")).status_code == 403
    assert QueueMessage.objects.filter(queue="q-a").count() == 2
    page = client.get(PURGE.format("q-a")).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    assert client.post(PURGE.format("q-a"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert QueueMessage.objects.filter(queue="q-a").count() == 0


def test_a_queue_name_is_escaped():
    page = Client()
    user = User.objects.create_superuser("root", password="pw")
    page.force_login(user)
    text = page.get(PURGE.format("<b>x</b>")).content.decode()
    assert "<b>x</b>" not in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text
