"""Worker commands from the admin over every broker: each POST changes the real worker.

The admin view is driven with Django's test client, as a browser would post it; the
worker is a real runworker process, and what changed is read back from the worker itself
(``inspect``), never from the admin's own message alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.test import override_settings

import djtasks
from djtasks import states
from djtasks.models import Worker
from tests.integration.conftest import (
    DATABASES,
    WorkerProcess,
    queue_size,
    rebind_mailboxes,
    start_worker,
    wait_until,
)
from tests.testapp import tasks

#: A mailbox of this module's own, and heartbeats often enough that a row appears at once.
WORKER_ENV = {"DJTASKS_CONTROL_EXCHANGE": "djtasks-console-workers",
              "DJTASKS_WORKER_HEARTBEAT_INTERVAL": "0.5"}

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.fixture(scope="module")
def hostname() -> str:
    return f"console-{uuid.uuid4().hex[:6]}@localhost"


@pytest.fixture(scope="module")
def worker(broker, queue_name, hostname, django_db_setup) -> Iterator[WorkerProcess]:
    """One prefork worker of two processes on the module's queue."""
    process = start_worker(broker, queue_name, "-c", "2", "-n", hostname, env=WORKER_ENV)
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _own_mailbox(app_settings):
    with override_settings(DJTASKS={**app_settings,
                                    "control_exchange": WORKER_ENV["DJTASKS_CONTROL_EXCHANGE"]}):
        yield


def online_row(broker, hostname: str) -> Worker:
    """The worker's row, once its heartbeat wrote it again after the last test's flush."""
    rebind_mailboxes(broker, [hostname])
    return wait_until(lambda: Worker.objects.filter(hostname=hostname).first(),
                      message=f"the Worker row of {hostname}")


def post(client, row: Worker, action: str, data: dict | None = None) -> str:
    """POST one command from the worker's page; return the message the admin showed."""
    response = client.post(f"/admin/djtasks/worker/{row.pk}/action/{action}/", data or {},
                           follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="messagelist"' in page, page
    return page


def ask(hostname: str):
    return djtasks.app.control.inspect(destination=[hostname], timeout=10)


def test_pool_grow_and_shrink_change_the_pool_processes(worker, broker, hostname, admin_client):
    row = online_row(broker, hostname)

    def processes() -> list[int]:
        return ask(hostname).stats()[hostname]["pool"]["processes"]

    before = processes()
    assert len(before) == 2
    assert "answered ok: pool will grow" in post(admin_client, row, "pool_grow", {"n": "2"})
    grown = wait_until(lambda: len(found := processes()) == 4 and found, message="4 processes")
    assert set(before) < set(grown)
    assert "answered ok: pool will shrink" in post(admin_client, row, "pool_shrink", {"n": "2"})
    wait_until(lambda: len(processes()) == 2, message="2 processes again")


def test_add_consumer_then_cancel_it_from_the_page(worker, broker, hostname, admin_client,
                                                   queue_name):
    row = online_row(broker, hostname)
    extra = f"{queue_name}-extra"

    def consumed() -> list[str]:
        return [queue["name"] for queue in ask(hostname).active_queues()[hostname]]

    assert f"answered ok: add consumer {extra}" in post(admin_client, row, "add_consumer",
                                                        {"queue": extra})
    assert extra in consumed()
    assert tasks.whoami.apply_async(queue=extra).get(timeout=30)["hostname"] == hostname

    form = admin_client.get(f"/admin/djtasks/worker/{row.pk}/action/cancel_consumer/")
    assert f'<option value="{extra}">' in form.content.decode()
    assert f"answered ok: no longer consuming from {extra}" in post(
        admin_client, row, "cancel_consumer", {"queue": extra})
    assert extra not in consumed()
    waiting = tasks.whoami.apply_async(queue=extra)
    assert djtasks.app.control.ping(destination=[hostname], timeout=5)  # a round trip first
    wait_until(lambda: queue_size(broker, extra) == 1, message="the message waits in its queue")
    assert waiting.state == states.PENDING
    djtasks.app.control.purge([extra])


def test_a_rate_limit_from_the_page_holds_the_task_until_it_is_lifted(worker, broker, hostname,
                                                                      admin_client, tmp_path):
    row = online_row(broker, hostname)
    limited = {"task_name": "tests.testapp.tasks.clock_in", "rate_limit": "1/h"}
    assert "answered ok: new rate limit set successfully" in post(admin_client, row,
                                                                  "rate_limit", limited)
    path = tmp_path / "starts.txt"
    try:
        # One after the other: consuming children race for the queue, so the first sent
        # is not always the first to take the token.
        first = tasks.clock_in.delay(str(path), "first")
        assert first.get(timeout=30) == "first"
        held = tasks.clock_in.delay(str(path), "held")
        # One token an hour: the second is held by the worker, reserved, not started.
        wait_until(lambda: held.id in [one["id"] for one in ask(hostname).reserved()[hostname]],
                   message="the second run held by its rate limit")
        assert held.state == states.PENDING
    finally:
        lifted = post(admin_client, row, "rate_limit", {**limited, "rate_limit": ""})
    assert "answered ok: rate limit disabled successfully" in lifted
    assert held.get(timeout=30) == "held"


def test_shutdown_from_the_page_stops_the_worker_warm(broker, worker_factory, admin_client,
                                                      queue_name, tmp_path):
    own = f"{queue_name}-shut"
    name = f"console-shut-{uuid.uuid4().hex[:6]}@localhost"
    stopping = worker_factory("-c", "1", "-n", name, "-Q", own, env=WORKER_ENV)
    row = online_row(broker, name)
    starts = tmp_path / "starts.txt"
    in_flight = tasks.clock_in.apply_async((str(starts), "running", 4), queue=own)
    wait_until(lambda: starts.exists() and starts.read_text(), message="the task started")

    page = post(admin_client, row, "shutdown")

    assert f"Shutdown: {name} answered ok: shutting down" in page
    assert stopping.process.wait(timeout=30) == 0
    assert in_flight.get(timeout=15) == "running"  # warm: the running task ran to its end
    row.refresh_from_db()
    assert row.written_status == "offline"
    gone = admin_client.post(f"/admin/djtasks/worker/{row.pk}/action/shutdown/", follow=True)
    assert "is offline (it shut down): nobody is there to answer" in gone.content.decode()
