"""The result list's select-all in Chromium: an estimated count, then a batched delete of the selection."""

from __future__ import annotations

import re

from django.db import connections
from playwright.sync_api import expect

from djtasks.admin.pagination import ESTIMATE_ABOVE
from djtasks.models import TaskResult
from tests.e2e.conftest import E2E_MARKS, MODELS_DB

pytestmark = E2E_MARKS

GONE = ESTIMATE_ABOVE + 200


def fill(count: int, queue: str) -> None:
    TaskResult.objects.using(MODELS_DB).bulk_create(
        [TaskResult(task_id=f"{queue}-{index}", task_name="tests.testapp.tasks.add", queue=queue)
         for index in range(count)], batch_size=2000)


def test_select_all_of_a_filter_asks_with_the_count_and_deletes_only_that(admin_page):
    fill(GONE, "q-gone")
    fill(30, "q-kept")
    with connections[MODELS_DB].cursor() as cursor:
        cursor.execute("ANALYZE djtasks_taskresult")  # as autovacuum would after such a fill
    admin_page.goto("/admin/djtasks/taskresult/")
    expect(admin_page.locator(".djtasks-result-count")).to_have_text(re.compile(r"about \d+"))

    admin_page.goto("/admin/djtasks/taskresult/?queue=q-gone")
    admin_page.check("#action-toggle")
    admin_page.click(".actions .question a")  # "Select all about N task results"
    admin_page.select_option("select[name=action]", "delete_selected")
    admin_page.click("button[name=index]")
    question = admin_page.locator("#djtasks-delete-question")
    expect(question).to_contain_text("task results?")
    shown = int(admin_page.locator("#djtasks-delete-count").inner_text())
    assert abs(shown - GONE) < GONE // 10  # the planner's estimate, or the exact count

    admin_page.click("#djtasks-action-submit")
    expect(admin_page.locator(".messagelist")).to_contain_text(f"Deleted {GONE} task results.")
    results = TaskResult.objects.using(MODELS_DB)
    assert not results.filter(queue="q-gone").exists()
    assert results.filter(queue="q-kept").count() == 30
