"""Workers in Chromium: add a consumer to a running worker from its page."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

import djtasks
from djtasks.models import Worker
from tests.e2e.conftest import E2E_MARKS, STAFF, RunningWorker
from tests.integration.conftest import wait_until
from tests.testapp import tasks

pytestmark = E2E_MARKS


@pytest.fixture
def worker_row(worker_mailbox: RunningWorker) -> Worker:
    """The module worker's row, once its heartbeat wrote it again after the last test's flush."""
    return wait_until(lambda: Worker.objects.filter(hostname=worker_mailbox.hostname).first(),
                      message="the worker's row")


def consumed(hostname: str) -> list[str]:
    answer = djtasks.app.control.inspect(destination=[hostname], timeout=10).active_queues()
    return [queue["name"] for queue in answer[hostname]]


def test_add_a_consumer_from_the_workers_page(admin_page, worker_row, queue_name):
    extra = f"{queue_name}-e2e-{uuid.uuid4().hex[:4]}"
    admin_page.goto(f"/admin/djtasks/worker/{worker_row.pk}/change/")
    expect(admin_page.locator("#content")).to_contain_text("online: answers remote-control")
    admin_page.click("#djtasks-action-add_consumer")
    admin_page.fill("#id_queue", extra)
    admin_page.click("#djtasks-action-submit")
    expect(admin_page.locator(".messagelist")).to_contain_text(
        f"{worker_row.hostname} answered ok: add consumer {extra}")
    try:
        assert extra in consumed(worker_row.hostname)
        ran = tasks.whoami.apply_async(queue=extra).get(timeout=30)
        assert ran["hostname"] == worker_row.hostname
    finally:
        djtasks.app.control.cancel_consumer(extra, destination=[worker_row.hostname],
                                            reply=True, timeout=10)


def test_a_staff_user_without_permissions_sees_no_worker_command(open_page, worker_row):
    page = open_page(STAFF)
    page.goto(f"/admin/djtasks/worker/{worker_row.pk}/change/")
    expect(page.locator("#content")).to_contain_text(worker_row.hostname)
    expect(page.locator(".djtasks-action")).to_have_count(0)
