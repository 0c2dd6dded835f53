"""Task results in Chromium: retry a failed task from its page, and it succeeds."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

import djtasks
from djtasks.models import TaskResult
from tests.e2e.conftest import E2E_MARKS, STAFF
from tests.testapp import e2e

pytestmark = E2E_MARKS


@pytest.fixture
def failed(worker_mailbox, tmp_path):
    """A task that failed because its file was missing, and the file now there."""
    cure = tmp_path / "cured"
    result = e2e.fail_until.delay(str(cure))
    with pytest.raises(e2e.NotCuredYet):
        result.get(timeout=30)
    cure.touch()
    return TaskResult.objects.get(task_id=result.id)


def test_retry_a_failed_task_and_the_new_result_succeeds(admin_page, failed):
    admin_page.goto(f"/admin/djtasks/taskresult/{failed.pk}/change/")
    expect(admin_page.locator("#content")).to_contain_text("FAILURE")
    admin_page.click("#djtasks-action-retry")
    message = admin_page.locator(".messagelist")
    expect(message).to_contain_text(f"(retry of {failed.task_id})")
    new_id = re.search(r"again as (\S+) \(retry of", message.inner_text()).group(1)
    assert new_id != failed.task_id
    assert djtasks.app.AsyncResult(new_id).get(timeout=30) == "cured"


def test_a_staff_user_without_permissions_sees_no_action_on_a_result(open_page, failed):
    page = open_page(STAFF)
    page.goto(f"/admin/djtasks/taskresult/{failed.pk}/change/")
    expect(page.locator("#content")).to_contain_text(failed.task_id)
    expect(page.locator(".djtasks-action")).to_have_count(0)
