"""A task result's detail page in Chromium: the escaped traceback, retry, "retried as" and back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

import djtasks
from djtasks.models import TaskResult
from tests.e2e.conftest import E2E_MARKS
from tests.testapp import e2e

pytestmark = E2E_MARKS

MARKUP = "<script>window.djtasksPwned = true</script>"


def test_the_traceback_reads_as_text_and_retried_as_leads_to_the_new_result(
        admin_page, worker_mailbox, tmp_path):
    # It fails with markup in its message and arguments; then its cure is there for the retry.
    cure = tmp_path / "cured"
    first = e2e.fail_saying_until.delay(str(cure), MARKUP)
    with pytest.raises(e2e.NotCuredYet):
        first.get(timeout=30)
    cure.touch()
    failed = TaskResult.objects.get(task_id=first.id)

    admin_page.goto(f"/admin/djtasks/taskresult/{failed.pk}/change/")
    traceback = admin_page.locator(".field-traceback_text pre")
    expect(traceback).to_contain_text(f"NotCuredYet: {MARKUP}")
    expect(admin_page.locator(".field-arguments pre")).to_contain_text(MARKUP)
    assert admin_page.evaluate("window.djtasksPwned === undefined")

    admin_page.click("#djtasks-action-retry")
    expect(admin_page.locator(".messagelist")).to_contain_text(f"(retry of {failed.task_id})")
    retried = TaskResult.objects.get(retry_of=failed.task_id)
    assert djtasks.app.AsyncResult(retried.task_id).get(timeout=30) == "cured"

    admin_page.reload()
    admin_page.locator("#djtasks-graph-retried-as a", has_text=retried.task_id).click()
    expect(admin_page.locator(".field-task_id")).to_contain_text(retried.task_id)
    expect(admin_page.locator("#content")).to_contain_text("SUCCESS")
    back = admin_page.locator("#djtasks-graph-retry-of a")
    expect(back).to_have_text(failed.task_id)
    back.click()
    expect(admin_page.locator(".field-task_id")).to_contain_text(failed.task_id)
