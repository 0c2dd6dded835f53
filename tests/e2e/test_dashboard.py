"""The dashboard in Chromium: the worker online, a queue depth that falls as tasks drain."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import E2E_MARKS
from tests.testapp import tasks

pytestmark = E2E_MARKS

#: Tasks of half a second on two processes: the queue takes about fifteen seconds to drain,
#: three refreshes of the page at least.
DRAIN_TASKS = 60
TASK_SECONDS = 0.5


def test_login_shows_the_dashboard_linked_from_the_index(admin_page):
    admin_page.click("a[href='/admin/djtasks/dashboard/']")
    expect(admin_page).to_have_url(re.compile(r"/admin/djtasks/dashboard/$"))
    expect(admin_page.locator("#djtasks-console")).to_be_visible()


def test_the_dashboard_shows_the_worker_online(admin_page, worker_mailbox):
    admin_page.goto("/admin/djtasks/dashboard/")
    # The Worker row is written by the heartbeat; the page refreshes itself until it shows.
    row = admin_page.locator(f"#djtasks-workers tr[data-worker='{worker_mailbox.hostname}']")
    expect(row).to_have_attribute("data-status", "online")


def test_the_queue_depth_falls_as_the_worker_drains_it(admin_page, worker_mailbox, queue_name):
    for _ in range(DRAIN_TASKS):
        tasks.slow_add.delay(1, 1, seconds=TASK_SECONDS)
    admin_page.goto("/admin/djtasks/dashboard/")
    waiting = admin_page.locator(f"#djtasks-queues tr[data-queue='{queue_name}'] td.waiting")
    first = int(waiting.inner_text())
    assert first > 0, "just published: most of the tasks still wait"
    # No reload from here: the page's own refresh brings the falling numbers.
    expect(waiting).to_have_text("0", timeout=60_000)


def test_pausing_stops_the_refresh_and_resuming_starts_it(admin_page, worker_mailbox):
    admin_page.goto("/admin/djtasks/dashboard/")
    refreshes: list[str] = []
    admin_page.on("request", lambda request: refreshes.append(request.url)
                  if "fragment=1" in request.url else None)
    with admin_page.expect_request(lambda request: "fragment=1" in request.url, timeout=15_000):
        pass  # the page refreshes itself while not paused
    pause = admin_page.locator("#djtasks-pause")
    pause.click()
    expect(pause).to_have_text("Resume")
    seen = len(refreshes)
    admin_page.wait_for_timeout(6_000)  # more than one refresh period: none may start
    assert len(refreshes) == seen
    pause.click()
    expect(pause).to_have_text("Pause")
    with admin_page.expect_request(lambda request: "fragment=1" in request.url, timeout=15_000):
        pass
