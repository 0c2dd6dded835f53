"""Dead letters in the admin: the list, the message as received, replay once, permissions."""

from __future__ import annotations

import threading

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connections
from django.test import Client, override_settings
from django.utils import timezone

import djtasks
from djtasks.models import DeadLetter, TaskDelivery
from tests.integration.conftest import wait_until
from tests.testapp import tasks
from tests.unit.console_users import staff_client
from tests.unit.memory_broker import drain, run_queued_tasks

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])

LIST = "/admin/djtasks/deadletter/"


def change_url(row: DeadLetter) -> str:
    return f"{LIST}{row.pk}/change/"


def replay_url(row: DeadLetter) -> str:
    return f"{LIST}{row.pk}/action/replay/"


@pytest.fixture(autouse=True)
def limit_two():
    """memory:// (published messages are read back with drain) and two deliveries at most."""
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit",
                                    "task_max_deliveries": 2}):
        yield
    drain("unit")


@pytest.fixture
def dead(tmp_path) -> DeadLetter:
    """A task dead-lettered by the worker: its message delivered three times, past the limit."""
    path = tmp_path / "runs"
    for _ in range(3):
        tasks.record_late.apply_async((str(path), "<script>alert(1)</script>"), task_id="dl-1")
    run_queued_tasks()
    assert path.read_text().count("start") == 2
    return DeadLetter.objects.get(task_id="dl-1")


@pytest.fixture
def unreadable() -> DeadLetter:
    return DeadLetter.objects.keep_unreadable(
        "body: '<script>alert(2)</script>' not JSON", "rejected: <script>alert(3)</script>",
        reason_code="decode_error", queue="unit", worker="w1")


def staff(*codenames: str, csrf: bool = False) -> Client:
    return staff_client("view_deadletter", *codenames, csrf=csrf)


def test_the_list_shows_reason_task_queue_and_worker(admin_client, dead):
    page = admin_client.get(LIST).content.decode()
    assert "dl-1" in page
    assert "tests.testapp.tasks.record_late" in page
    assert "delivered 3 times" in page
    assert dead.worker in page
    assert ">unit<" in page


def test_the_page_shows_the_message_as_received_escaped_in_pre(admin_client, dead, unreadable):
    page = admin_client.get(change_url(dead)).content.decode()
    assert '<pre class="djtasks-pre"' in page
    assert "&quot;id&quot;: &quot;dl-1&quot;" in page  # the headers, as JSON
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the body
    assert "<script>alert(" not in page
    assert 'id="djtasks-action-replay"' in page
    page = admin_client.get(change_url(unreadable)).content.decode()
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "<script>alert(" not in page


def test_replay_publishes_the_message_once_unchanged(admin_client, dead):
    assert TaskDelivery.objects.get(task_id="dl-1").count == 3
    response = admin_client.post(replay_url(dead), follow=True)
    assert "Replayed tests.testapp.tasks.record_late[dl-1] to unit" in response.content.decode()
    dead.refresh_from_db()
    assert dead.replayed_at is not None
    assert dead.replayed_by == "admin"
    assert not TaskDelivery.objects.filter(task_id="dl-1").exists()  # not dead-lettered at once
    assert LogEntry.objects.get(object_id=str(dead.pk)).change_message.startswith("Replayed")

    second = admin_client.post(replay_url(dead), follow=True).content.decode()
    assert "it was replayed already, by admin" in second
    assert LogEntry.objects.count() == 1

    (message,) = drain("unit")  # exactly one message, the one kept
    assert message.body == bytes(dead.body)
    assert message.headers["id"] == "dl-1"
    assert message.properties["correlation_id"] == "dl-1"


def test_a_replayed_message_runs_on_the_worker(admin_client, dead, tmp_path):
    runs = tmp_path / "runs"
    before = runs.read_text().count("done")  # the two deliveries within the limit ran
    admin_client.post(replay_url(dead))
    run_queued_tasks()
    assert runs.read_text().count("done") == before + 1, "the replay ran, once"
    assert tasks.record_late.AsyncResult("dl-1").get(timeout=1) == "<script>alert(1)</script>"


def test_the_page_of_a_replayed_dead_letter_offers_no_replay(admin_client, dead):
    admin_client.post(replay_url(dead))
    page = admin_client.get(change_url(dead)).content.decode()
    assert 'id="djtasks-action-replay"' not in page
    assert "it was replayed already" in page


def test_an_unreadable_dead_letter_cannot_be_replayed_and_says_why(admin_client, unreadable):
    page = admin_client.get(change_url(unreadable)).content.decode()
    assert 'id="djtasks-action-replay"' not in page
    assert "Cannot be replayed: it was unreadable" in page
    response = admin_client.post(replay_url(unreadable), follow=True).content.decode()
    assert "Cannot replay" in response
    assert "it was unreadable" in response
    assert drain("unit") == []
    assert not LogEntry.objects.exists()
    unreadable.refresh_from_db()
    assert unreadable.replayed_at is None


def test_staff_without_the_permission_sees_no_replay_and_gets_403(dead):
    client = staff()
    page = client.get(change_url(dead)).content.decode()
    assert "dl-1" in page
    assert "djtasks-action-" not in page
    assert client.post(replay_url(dead)).status_code == 403
    assert drain("unit") == []
    dead.refresh_from_db()
    assert dead.replayed_at is None


def test_a_staff_user_with_the_permission_may_replay(dead):
    client = staff("replay_deadletter")
    assert 'id="djtasks-action-replay"' in client.get(change_url(dead)).content.decode()
    assert client.post(replay_url(dead)).status_code == 302
    assert len(drain("unit")) == 1


def test_a_replay_without_the_csrf_token_is_refused(dead):
    client = staff("replay_deadletter", csrf=True)
    assert client.post(replay_url(dead)).status_code == 403
    assert drain("unit") == []


def test_delete_is_the_admins_own(admin_client, unreadable):
    response = admin_client.post(f"{LIST}{unreadable.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not DeadLetter.objects.exists()


def test_of_two_replays_at_once_exactly_one_claims_the_dead_letter():
    # Two admins at the same moment, each in its own connection to PostgreSQL.
    row = DeadLetter.objects.using("postgres").create(
        task_id="race", deliveries=2, reason="r", body=b"[]", content_type="application/json")
    start, won = threading.Barrier(2), []

    def replay(who: str) -> None:
        start.wait()
        try:
            won.append(DeadLetter.objects.using("postgres").claim_replay(row.pk, who, timezone.now()))
        finally:
            connections["postgres"].close()

    threads = [threading.Thread(target=replay, args=(who,)) for who in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(won) == [False, True]
    row.refresh_from_db()
    assert row.replayed_by in ("alice", "bob")


def test_a_sensitive_tasks_body_is_hidden_on_the_page(admin_client):
    row = DeadLetter.objects.create(
        task_id="secret-1", task_name="tests.testapp.tasks.secret_add", queue="unit",
        deliveries=3, reason="delivered 3 times", content_type="application/json",
        content_encoding="utf-8", body=b'[[4242424242, 31313131], {}, {}]',
        headers={"id": "secret-1", "task": "tests.testapp.tasks.secret_add"})
    page = admin_client.get(change_url(row)).content.decode()
    assert "body: [hidden]" in page
    assert "4242424242" not in page
    assert "&quot;id&quot;: &quot;secret-1&quot;" in page  # the headers stay


# -- replay on a broker outside the database: claim, commit, publish, give back on failure -----

def held_producer_settings(timeout: float) -> dict:
    """memory:// (not django://) with one pooled producer, so a test can hold it."""
    return {"broker_url": "memory://", "task_default_queue": "unit", "task_max_deliveries": 2,
            "broker_pool_limit": 1, "broker_connection_timeout": timeout}


def replay_in_thread(client: Client, row: DeadLetter, pages: list[str]) -> threading.Thread:
    def replay() -> None:
        try:
            pages.append(client.post(replay_url(row), follow=True).content.decode())
        finally:
            connections.close_all()

    thread = threading.Thread(target=replay)
    thread.start()
    return thread


def test_on_another_broker_the_claim_is_committed_before_the_publish(admin_client, dead):
    """While the publish waits for a producer, another connection sees the row claimed."""
    pages: list[str] = []
    with override_settings(DJTASKS=held_producer_settings(timeout=30)):
        held = djtasks.app.publisher._pool.acquire(block=True)  # the replay's publish waits
        try:
            thread = replay_in_thread(admin_client, dead, pages)
            wait_until(lambda: DeadLetter.objects.filter(pk=dead.pk, replayed_by="admin").exists(),
                       timeout=10, message="the claim committed while the publish waits")
        finally:
            held.release()
        thread.join(timeout=30)
    assert "Replayed tests.testapp.tasks.record_late[dl-1] to unit" in pages[0]
    assert len(drain("unit")) == 1


def test_a_publish_that_gets_no_producer_in_time_gives_the_claim_back(admin_client, dead):
    pages: list[str] = []
    with override_settings(DJTASKS=held_producer_settings(timeout=0.2)):
        held = djtasks.app.publisher._pool.acquire(block=True)  # none left for the replay
        try:
            thread = replay_in_thread(admin_client, dead, pages)
            thread.join(timeout=20)
            assert not thread.is_alive(), "the publish waits for a producer for ever"
        finally:
            held.release()
        thread.join(timeout=30)
    assert "Cannot replay" in pages[0]
    dead.refresh_from_db()
    assert (dead.replayed_at, dead.replayed_by) == (None, "")
    assert drain("unit") == []
