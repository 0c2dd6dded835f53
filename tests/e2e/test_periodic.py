"""Periodic tasks in Chromium: run one now, and its result appears on its page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

import djtasks
from djtasks.models import IntervalSchedule, PeriodicTask
from tests.e2e.conftest import E2E_MARKS, STAFF

pytestmark = E2E_MARKS


@pytest.fixture
def periodic(worker) -> PeriodicTask:
    """An hourly add(20, 22) that beat has not sent yet, on the module's queue (the default)."""
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    return PeriodicTask.objects.create(name="e2e-hourly-sum", task="tests.testapp.tasks.add",
                                       args=[20, 22], interval=every_hour)


def test_run_a_periodic_task_now_and_its_result_appears(admin_page, periodic):
    admin_page.goto(f"/admin/djtasks/periodictask/{periodic.pk}/change/")
    expect(admin_page.locator("#content")).to_contain_text("every 1 hours")
    admin_page.click("#djtasks-action-run_now")
    message = admin_page.locator(".messagelist")
    expect(message).to_contain_text("(run now of e2e-hourly-sum by e2e-admin)")
    task_id = re.search(r"now as (\S+) \(run now of", message.inner_text()).group(1)
    assert djtasks.app.AsyncResult(task_id).get(timeout=30) == 42

    admin_page.reload()
    last = admin_page.locator("a.djtasks-last-result")
    expect(last).to_contain_text("SUCCESS")
    last.click()
    expect(admin_page.locator("#content")).to_contain_text(task_id)
    expect(admin_page.locator("#content")).to_contain_text("SUCCESS")
    periodic.refresh_from_db()
    assert (periodic.last_task_id, periodic.total_run_count) == (task_id, 0)


def test_a_staff_user_without_permissions_cannot_run_it_now(open_page, periodic):
    page = open_page(STAFF)
    page.goto(f"/admin/djtasks/periodictask/{periodic.pk}/change/")
    expect(page.locator("#content")).to_contain_text("e2e-hourly-sum")
    expect(page.locator(".djtasks-action")).to_have_count(0)
