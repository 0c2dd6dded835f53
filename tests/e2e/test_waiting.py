"""Waiting work in Chromium: revoke a countdown task from its page, and the worker never runs it.

On django:// the task waits invisible in the queue table (queue messages); on RabbitMQ the
worker parks it (parked messages).
"""

from __future__ import annotations

from playwright.sync_api import expect

import djtasks
from djtasks import states
from djtasks.models import ParkedMessage
from tests.e2e.conftest import E2E_MARKS, STAFF
from tests.integration.conftest import wait_until
from tests.testapp import tasks

pytestmark = E2E_MARKS

#: Long enough for the browser to get there first, on a busy machine too.
COUNTDOWN = 20


def waiting_list(broker) -> str:
    if broker.is_django:
        return "/admin/djtasks/queuemessage/"
    return "/admin/djtasks/parkedmessage/"


def send_later(broker, path):
    result = tasks.record.apply_async((str(path), "late"), countdown=COUNTDOWN)
    if not broker.is_django:
        wait_until(lambda: ParkedMessage.objects.filter(task_id=result.id).exists(), timeout=30,
                   message="the worker parked the countdown task")
    return result


def test_revoke_a_countdown_task_and_the_worker_never_runs_it(admin_page, broker, worker_mailbox,
                                                               tmp_path):
    path = tmp_path / "runs"
    result = send_later(broker, path)
    admin_page.goto(f"{waiting_list(broker)}?q={result.id}")
    expect(admin_page.locator("#djtasks-broker")).to_contain_text("Broker:")
    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("tests.testapp.tasks.record")
    rows.locator("a").first.click()
    admin_page.click("#djtasks-action-revoke")
    expect(admin_page.locator(".messagelist")).to_contain_text(f"Revoked task {result.id}")
    wait_until(lambda: result.state == states.REVOKED, timeout=COUNTDOWN + 40,
               message="the worker skipped the revoked task when it came due")
    assert djtasks.app.AsyncResult(result.id).state == states.REVOKED
    assert tasks.add.delay(1, 1).get(timeout=30) == 2
    assert not path.exists(), "the revoked task never ran"


def test_a_staff_user_without_revoke_sees_no_revoke(open_page, broker, worker_mailbox, tmp_path):
    result = send_later(broker, tmp_path / "runs")
    page = open_page(STAFF)
    page.goto(f"{waiting_list(broker)}?q={result.id}")
    page.locator("#result_list tbody tr a").first.click()
    expect(page.locator("#content")).to_contain_text(result.id)
    expect(page.locator(".djtasks-action")).to_have_count(0)
    djtasks.app.control.revoke(result.id)  # nobody is to run it after the test
