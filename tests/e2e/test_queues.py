"""The queues page in Chromium: a queue's depth, its purge behind a confirmation, permissions.

No worker runs in this module: what is published waits, so the page has a depth to show
and the purge something to delete.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import E2E_MARKS, STAFF
from tests.testapp import tasks

pytestmark = E2E_MARKS

WAITING = 5


def queue_row(page, queue_name):
    return page.locator(f"tr[data-queue='{queue_name}']")


def test_purge_names_the_count_and_empties_the_queue(admin_page, queue_name):
    for _ in range(WAITING):
        tasks.add.delay(1, 1)
    admin_page.goto("/admin/djtasks/queue/")
    row = queue_row(admin_page, queue_name)
    expect(row.locator("td.waiting")).to_have_text(str(WAITING))
    row.locator("a.djtasks-purge").click()
    expect(admin_page.locator("#content")).to_contain_text(f"{WAITING} messages")
    admin_page.click("#djtasks-action-submit")
    expect(admin_page).to_have_url(re.compile(r"/admin/djtasks/queue/$"))
    expect(admin_page.locator(".messagelist")).to_contain_text(f"Purged {WAITING} messages")
    expect(queue_row(admin_page, queue_name).locator("td.waiting")).to_have_text("0")


def test_a_staff_user_without_purge_sees_no_purge_and_is_refused(open_page, queue_name):
    tasks.add.delay(1, 1)
    page = open_page(STAFF)
    page.goto("/admin/djtasks/queue/")
    row = queue_row(page, queue_name)
    expect(row).to_be_visible()
    expect(row.locator("a.djtasks-purge")).to_have_count(0)
    response = page.goto(f"/admin/djtasks/queue/{queue_name}/purge/")
    assert response is not None
    assert response.status == 403
    # Not even a POST with a valid CSRF token gets through.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    posted = page.request.post(f"/admin/djtasks/queue/{queue_name}/purge/",
                               headers={"X-CSRFToken": token, "Referer": page.url})
    assert posted.status == 403
    page.goto("/admin/djtasks/queue/")
    expect(queue_row(page, queue_name).locator("td.waiting")).not_to_have_text("0")
