"""Dead letters in Chromium: replay one from its page, and the task runs, once."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

import djtasks
from djtasks import states
from djtasks.exceptions import WorkerLostError
from djtasks.models import DeadLetter
from tests.e2e.conftest import E2E_MARKS, STAFF
from tests.integration.conftest import wait_until
from tests.testapp import e2e

pytestmark = E2E_MARKS


@pytest.fixture
def dead(worker_mailbox, tmp_path):
    """A task dead-lettered for killing its worker, its cure now there, and its starts file."""
    cure, starts = tmp_path / "cured", tmp_path / "starts.txt"
    result = e2e.poison_until.delay(str(cure), str(starts))
    with pytest.raises(WorkerLostError):
        result.get(timeout=60)
    cure.touch()
    return DeadLetter.objects.get(task_id=result.id), starts


def test_replay_a_dead_letter_and_the_task_runs_once(admin_page, dead):
    row, starts = dead
    admin_page.goto(f"/admin/djtasks/deadletter/{row.pk}/change/")
    expect(admin_page.locator("#content")).to_contain_text("delivered 2 times")
    expect(admin_page.locator("pre.djtasks-pre")).to_contain_text(row.task_id)
    admin_page.click("#djtasks-action-replay")
    expect(admin_page.locator(".messagelist")).to_contain_text(
        f"Replayed tests.testapp.e2e.poison_until[{row.task_id}]")
    expect(admin_page.locator("#djtasks-action-replay")).to_have_count(0)
    expect(admin_page.locator("#content")).to_contain_text("it was replayed already, by e2e-admin")
    wait_until(lambda: djtasks.app.AsyncResult(row.task_id).state == states.SUCCESS, timeout=60,
               message="the replayed task ran on the worker")
    assert starts.read_text().count("start") == 2, "once before it was dead-lettered, once replayed"


def test_a_staff_user_without_the_permission_sees_no_replay(open_page, dead):
    row, _starts = dead
    page = open_page(STAFF)
    page.goto(f"/admin/djtasks/deadletter/{row.pk}/change/")
    expect(page.locator("#content")).to_contain_text(row.task_id)
    expect(page.locator(".djtasks-action")).to_have_count(0)
