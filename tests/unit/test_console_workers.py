"""Workers in the admin: remote control behind permission, CSRF, validated forms and history.

The worker that answers is the real worker-side mailbox (``WorkerControl`` on a real
consumer and threads pool), listening on ``memory://`` in a thread of the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client, override_settings
from django.utils import timezone

import djtasks
from djtasks.admin import workers as workers_admin
from djtasks.models import Worker
from djtasks.models.workers import OFFLINE, lost_after
from djtasks.worker.consumer import Consumer
from djtasks.worker.control import WorkerControl
from djtasks.worker.executor import Executor
from djtasks.worker.pools import POOLS
from tests.unit.console_users import staff_client

pytestmark = [pytest.mark.django_db]

LIST = "/admin/djtasks/worker/"
HOST = "unit-w1@localhost"
ACTIONS = ("pool_grow", "pool_shrink", "add_consumer", "cancel_consumer", "rate_limit", "shutdown")


@pytest.fixture(autouse=True)
def memory_broker():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit-q",
                                    "control_exchange": "console-unit",
                                    # memory:// polls each queue; a round trip is then ms, not s
                                    "broker_transport_options": {"polling_interval": 0.01}}):
        yield


@pytest.fixture
def answering() -> Iterator[WorkerControl]:
    """A worker's mailbox answering in a thread: the same code a runworker answers with."""
    app = djtasks.app
    pool = POOLS["threads"](1, Executor(app))
    pool.start()
    shutdown = threading.Event()
    control = WorkerControl(Consumer(app, pool, ["unit-q"], HOST, 1), HOST,
                            on_shutdown=shutdown.set)
    control.shutdown_requested = shutdown
    stop = threading.Event()
    connection = app.connection()
    control.listen(connection)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection.drain_events(timeout=0.05)
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, name="unit-mailbox", daemon=True)
    thread.start()
    yield control
    stop.set()
    thread.join(5)
    control.close()
    connection.release()
    pool.stop(wait=True)


def worker_row(hostname: str = HOST, *, age: float = 0.0, **fields) -> Worker:
    beat = timezone.now() - timedelta(seconds=age)
    fields.setdefault("queues", ["unit-q"])
    return Worker.objects.create(hostname=hostname, started=beat, last_heartbeat=beat,
                                 heartbeat_interval=2.0, lost_after=lost_after(beat, 2.0),
                                 pool="threads", concurrency=1, **fields)


def change_url(row: Worker) -> str:
    return f"{LIST}{row.pk}/change/"


def action_url(row: Worker, name: str) -> str:
    return f"{LIST}{row.pk}/action/{name}/"


def staff(*codenames: str, csrf: bool = False) -> Client:
    return staff_client("view_worker", *codenames, csrf=csrf)


def test_an_online_worker_offers_every_command(admin_client):
    page = admin_client.get(change_url(worker_row())).content.decode()
    for name in ACTIONS:
        assert f'id="djtasks-action-{name}"' in page
    assert "online: answers remote-control commands" in page


@pytest.mark.parametrize(("fields", "said"), [
    ({"age": 60}, "is lost (no heartbeat for 60 s)"),
    ({"written_status": OFFLINE}, "is offline (it shut down)"),
])
def test_a_worker_that_is_not_online_gets_no_command_and_the_page_says_why(admin_client, fields,
                                                                          said):
    row = worker_row(**fields)
    page = admin_client.get(change_url(row)).content.decode()
    assert "djtasks-action-" not in page
    assert said in page
    response = admin_client.post(action_url(row, "pool_grow"), {"n": "1"}, follow=True)
    assert "nobody is there to answer remote control" in response.content.decode()
    assert not LogEntry.objects.exists()


def test_staff_without_control_worker_sees_no_command_and_gets_403(answering):
    row = worker_row()
    client = staff()
    assert "djtasks-action-" not in client.get(change_url(row)).content.decode()
    for name in ACTIONS:
        assert client.post(action_url(row, name), {"n": "1", "queue": "x"}).status_code == 403
    assert not answering.shutdown_requested.is_set()
    assert answering.consumer.queue_names == ["unit-q"]


def test_a_post_without_the_csrf_token_is_refused(answering):
    row = worker_row()
    client = staff("control_worker", csrf=True)
    assert client.post(action_url(row, "shutdown")).status_code == 403
    assert not answering.shutdown_requested.is_set()


def test_shutdown_asks_first_then_the_worker_answers_and_it_is_logged(answering):
    row = worker_row()
    client = staff("control_worker")
    confirm = client.get(action_url(row, "shutdown"))
    assert 'id="djtasks-action-submit"' in confirm.content.decode()
    assert not answering.shutdown_requested.is_set()
    response = client.post(action_url(row, "shutdown"), follow=True)
    assert f"Shutdown: {HOST} answered ok: shutting down" in response.content.decode()
    assert answering.shutdown_requested.is_set()
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.user.username) == (str(row.pk), "staff")
    assert "answered ok: shutting down" in entry.change_message


def test_rate_limit_offers_the_registered_tasks_and_sets_the_workers_limit(admin_client, answering):
    row = worker_row()
    form = admin_client.get(action_url(row, "rate_limit")).content.decode()
    assert '<option value="tests.testapp.tasks.add">' in form
    assert "djtasks.builtins" not in form
    response = admin_client.post(action_url(row, "rate_limit"),
                                 {"task_name": "tests.testapp.tasks.add", "rate_limit": "10/m"},
                                 follow=True)
    assert "answered ok: new rate limit set successfully" in response.content.decode()
    assert answering.consumer.rate_limits.rate_of("tests.testapp.tasks.add") == pytest.approx(10 / 60)
    admin_client.post(action_url(row, "rate_limit"),
                      {"task_name": "tests.testapp.tasks.add", "rate_limit": ""})
    assert answering.consumer.rate_limits.rate_of("tests.testapp.tasks.add") is None


@pytest.mark.parametrize(("name", "data", "error"), [
    ("rate_limit", {"task_name": "tests.testapp.tasks.add", "rate_limit": "1/week"},
     "expected the unit s, m or h"),
    ("rate_limit", {"task_name": "tests.testapp.tasks.add", "rate_limit": "fast"},
     "expected &#x27;&lt;n&gt;/s&#x27;"),
    ("rate_limit", {"task_name": "no.such.task", "rate_limit": "1/s"}, "Select a valid choice"),
    ("pool_grow", {"n": "0"}, "greater than or equal to 1"),
    ("pool_shrink", {"n": "500"}, "less than or equal to 64"),
    ("pool_grow", {"n": "two"}, "Enter a whole number"),
    ("add_consumer", {"queue": "amq.mine"}, "amq.* is reserved"),
    ("add_consumer", {"queue": ""}, "This field is required"),
    ("cancel_consumer", {"queue": "never-consumed"}, "Select a valid choice"),
])
def test_an_invalid_form_is_shown_again_and_nothing_is_sent(admin_client, answering, name, data,
                                                           error):
    row = worker_row()
    response = admin_client.post(action_url(row, name), data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not LogEntry.objects.exists()
    assert answering.consumer.queue_names == ["unit-q"]
    assert answering.consumer.rate_limits.rate_of("tests.testapp.tasks.add") is None


def test_add_consumer_then_cancel_it_from_the_queues_the_worker_reports(admin_client, answering):
    row = worker_row()
    response = admin_client.post(action_url(row, "add_consumer"), {"queue": "unit-extra"},
                                 follow=True)
    assert f"Add consumer unit-extra: {HOST} answered ok: add consumer unit-extra" in (
        response.content.decode())
    assert answering.consumer.queue_names == ["unit-q", "unit-extra"]
    # The row still holds the start-up queues; the form asks the worker which it consumes now.
    form = admin_client.get(action_url(row, "cancel_consumer")).content.decode()
    assert '<option value="unit-extra">' in form
    admin_client.post(action_url(row, "cancel_consumer"), {"queue": "unit-extra"})
    assert answering.consumer.queue_names == ["unit-q"]
    assert LogEntry.objects.count() == 2


def test_an_error_answer_is_an_error_message_and_is_logged(admin_client, answering):
    row = worker_row()
    response = admin_client.post(action_url(row, "cancel_consumer"), {"queue": "unit-q"},
                                 follow=True)
    assert "answered ok: no longer consuming from unit-q" in response.content.decode()
    # A threads pool of one cannot shrink: the worker says so, and so does the page.
    response = admin_client.post(action_url(row, "pool_shrink"), {"n": "1"}, follow=True)
    page = response.content.decode()
    assert f"Pool shrink by 1: {HOST} answered error:" in page
    assert 'class="error"' in page
    assert "answered error" in LogEntry.objects.order_by("-pk").first().change_message


def test_no_answer_is_a_clear_error_not_a_crash(admin_client, monkeypatch):
    monkeypatch.setattr(workers_admin, "REPLY_TIMEOUT", 0.3)
    row = worker_row()  # online by its row, but nobody listens on its mailbox
    response = admin_client.post(action_url(row, "pool_grow"), {"n": "1"}, follow=True)
    assert response.status_code == 200
    assert f"Pool grow by 1: {HOST} did not answer within 0.3 s" in response.content.decode()
    assert "did not answer" in LogEntry.objects.get().change_message


def test_script_in_a_hostname_renders_as_text(admin_client):
    row = worker_row("<script>alert(1)</script>", age=60)
    for url in (LIST, change_url(row)):
        page = admin_client.get(url).content.decode()
        assert "<script>alert(" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
