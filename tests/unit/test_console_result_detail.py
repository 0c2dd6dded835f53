"""The task result detail page: formatting, escaping, the graph, terminate, retry links, delete."""

from __future__ import annotations

import re

import kombu
import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

import djtasks
from djtasks import states
from djtasks.admin.actions import ActionRefused
from djtasks.admin.result_actions import send_again
from djtasks.backends.base import ExecutionInfo
from djtasks.backends.database import DatabaseBackend
from djtasks.control import build_mailbox
from djtasks.models import ChordCounter, GroupResult, QueueMessage, RevokedTask, TaskResult
from tests.unit.console_users import staff_client

pytestmark = [pytest.mark.django_db]

LIST = "/admin/djtasks/taskresult/"
MEMORY = {"broker_url": "memory://", "task_default_queue": "detail"}


def change_url(row: TaskResult) -> str:
    return f"{LIST}{row.pk}/change/"


def action_url(row: TaskResult, name: str) -> str:
    return f"{LIST}{row.pk}/action/{name}/"


def result(task_id: str, status: str = states.SUCCESS, **fields) -> TaskResult:
    fields.setdefault("task_name", "tests.testapp.tasks.add")
    return TaskResult.objects.create(task_id=task_id, status=status, **fields)


def staff(*codenames: str, csrf: bool = False) -> Client:
    return staff_client("view_taskresult", *codenames, csrf=csrf)


@pytest.fixture
def control_queue():
    """The broadcasts the console sends, as a worker's mailbox would receive them."""
    with override_settings(DJTASKS=MEMORY), kombu.Connection("memory://") as connection:
        exchange = build_mailbox(djtasks.app)(connection).exchange
        with connection.SimpleQueue(kombu.Queue("detail-pidbox", exchange)) as queue:
            yield queue


# -- formatting and escaping ---------------------------------------------------------------


def test_arguments_and_result_are_pretty_printed_json(admin_client):
    row = result("pretty", args=[1, {"deep": [2, 3]}], kwargs={"y": "z"}, result={"total": 6},
                 task_args="(1, {...})")
    page = admin_client.get(change_url(row)).content.decode()
    assert '<pre class="djtasks-pre"' in page
    assert "{\n    &quot;deep&quot;: [\n      2," in page
    assert "&quot;total&quot;: 6" in page


def test_without_result_extended_the_argsrepr_is_shown(admin_client):
    row = result("repr-only", task_args="(1, 2)", task_kwargs="{'y': 3}")
    page = admin_client.get(change_url(row)).content.decode()
    assert "(1, 2)</pre>" in page
    assert "{&#x27;y&#x27;: 3}</pre>" in page


def test_script_in_arguments_result_and_traceback_renders_as_text(admin_client):
    row = result("xss", states.FAILURE, task_args="(<script>args()</script>,)",
                 kwargs={"k": "<script>kwargs()</script>"},
                 result={"exc_type": "ValueError", "exc_message": ["<script>result()</script>"]},
                 traceback='Traceback:\n  File "<script>traceback()</script>"')
    page = admin_client.get(change_url(row)).content.decode()
    for name in ("args", "kwargs", "result", "traceback"):
        assert f"<script>{name}()" not in page
        assert f"&lt;script&gt;{name}()&lt;/script&gt;" in page


def test_a_sensitive_tasks_arguments_read_hidden_whatever_the_row_holds(admin_client):
    row = result("secret", task_name="tests.testapp.tasks.secret_add", args=[4111111111111111],
                 kwargs={"pin": "pin-31337"}, task_args="(4111111111111111,)")
    page = admin_client.get(change_url(row)).content.decode()
    assert "4111111111111111" not in page
    assert "pin-31337" not in page
    assert page.count("[hidden]</pre>") == 2


# -- the result graph ----------------------------------------------------------------------


def test_parent_root_and_children_link_to_their_pages_or_say_not_stored(admin_client):
    parent = result("parent", root_id="root", children=["middle"])
    middle = result("middle", parent_id="parent", root_id="root", children=["child-1", "gone"])
    child = result("child-1", states.FAILURE, parent_id="middle", root_id="root")
    page = admin_client.get(change_url(middle)).content.decode()
    assert f'<a href="{change_url(parent)}" class="djtasks-result-link">parent</a>' in page
    assert "root (not stored)" in page
    assert f'<a href="{change_url(child)}" class="djtasks-result-link">child-1</a>' in page
    assert "gone (not stored)" in page
    child_page = admin_client.get(change_url(child)).content.decode()
    assert 'id="djtasks-graph-children"' not in child_page


def test_a_root_is_not_its_own_link(admin_client):
    alone = result("alone", root_id="alone")
    page = admin_client.get(change_url(alone)).content.decode()
    assert 'id="djtasks-graph-root"' not in page
    assert "No parent, children, group or retries." in page


def test_group_members_come_in_the_saved_order(admin_client):
    GroupResult.objects.create(group_id="g-1", result=["m-2", "m-1", "m-3"])
    first, second = result("m-1", group_id="g-1"), result("m-2", group_id="g-1")
    page = admin_client.get(change_url(first)).content.decode()
    assert "Group g-1:" in page
    group = page[page.index('id="djtasks-graph-group"'):]
    assert group.index(change_url(second)) < group.index(change_url(first)) < group.index("m-3 (not stored)")


def test_a_chord_shows_its_members_count_and_body(admin_client):
    ChordCounter.objects.create(group_id="c-1", total=2, remaining=1, member_ids=["h-1", "h-2"],
                                body={"task": "tests.testapp.tasks.xsum", "args": [], "kwargs": {},
                                      "options": {"task_id": "body-1"}})
    header = result("h-1", group_id="c-1", children=["body-1"])
    page = admin_client.get(change_url(header)).content.decode()
    assert "Chord c-1:" in page
    assert "1 of 2 header tasks still to finish" in page
    assert "body-1 (not stored)" in page
    assert "h-2 (not stored)" in page


def test_a_long_list_shows_the_first_links_and_counts_the_rest(admin_client):
    row = result("spawner", children=[f"c-{i}" for i in range(150)])
    page = admin_client.get(change_url(row)).content.decode()
    assert "c-99 (not stored)" in page
    assert "c-100 (not stored)" not in page
    assert "and 50 more" in page


def test_the_graph_costs_the_same_queries_for_one_child_as_for_thousands(admin_client):
    small = result("small", children=["only"], group_id="g-small")
    big = result("big", children=[f"k-{i}" for i in range(5000)], group_id="g-big")
    GroupResult.objects.create(group_id="g-big", result=[f"k-{i}" for i in range(5000)])
    GroupResult.objects.create(group_id="g-small", result=["small"])
    admin_client.get(change_url(small))  # the session and content types, cached from here on
    counts = []
    for row in (small, big):
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(change_url(row)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


# -- terminate -----------------------------------------------------------------------------


def test_terminate_is_hidden_and_forbidden_without_its_permission(control_queue):
    running = result("running", states.STARTED)
    client = staff("revoke_taskresult")
    page = client.get(change_url(running)).content.decode()
    assert 'id="djtasks-action-revoke"' in page
    assert 'id="djtasks-action-terminate"' not in page
    assert client.get(action_url(running, "terminate")).status_code == 403
    assert client.post(action_url(running, "terminate"), {"signal": "SIGKILL"}).status_code == 403
    assert not RevokedTask.objects.exists()
    assert control_queue.qsize() == 0


def test_terminate_is_offered_for_unfinished_tasks_only(control_queue):
    client = staff("terminate_taskresult")
    for status, offered in ((states.STARTED, True), (states.PENDING, True), (states.RETRY, True),
                            (states.SUCCESS, False), (states.FAILURE, False)):
        page = client.get(change_url(result(f"t-{status}", status))).content.decode()
        assert ('id="djtasks-action-terminate"' in page) is offered, status


def test_terminate_revokes_and_broadcasts_the_chosen_signal_with_history(control_queue):
    running = result("long", states.STARTED)
    client = staff("terminate_taskresult")
    form = client.get(action_url(running, "terminate")).content.decode()
    assert '<option value="SIGTERM" selected>SIGTERM</option>' in form
    response = client.post(action_url(running, "terminate"), {"signal": "SIGHUP"}, follow=True)
    assert "terminate it with SIGHUP" in response.content.decode()
    assert RevokedTask.objects.filter(task_id="long").exists()
    command = control_queue.get(timeout=1).payload
    assert command["method"] == "revoke"
    assert command["arguments"] == {"task_id": ["long"], "terminate": True, "signal": "SIGHUP"}
    assert "SIGHUP" in LogEntry.objects.get(object_id=str(running.pk)).change_message


@pytest.mark.parametrize("signal", ["SIGBOGUS", "", "9; rm -rf /"])
def test_terminate_refuses_a_signal_not_offered(control_queue, signal):
    running = result("long", states.STARTED)
    response = staff("terminate_taskresult").post(action_url(running, "terminate"), {"signal": signal})
    assert response.status_code == 200  # the form again, with its error
    assert 'class="errorlist' in response.content.decode()
    assert not RevokedTask.objects.exists()
    assert control_queue.qsize() == 0
    assert not LogEntry.objects.exists()


def test_terminate_without_the_csrf_token_is_refused_and_with_it_done(control_queue):
    running = result("long", states.STARTED)
    client = staff("terminate_taskresult", csrf=True)
    assert client.post(action_url(running, "terminate"), {"signal": "SIGKILL"}).status_code == 403
    assert not RevokedTask.objects.exists()
    form = client.get(action_url(running, "terminate")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    done = client.post(action_url(running, "terminate"),
                       {"signal": "SIGKILL", "csrfmiddlewaretoken": token})
    assert done.status_code == 302
    assert RevokedTask.objects.filter(task_id="long").exists()


# -- retry links back ----------------------------------------------------------------------


@pytest.fixture
def django_broker():
    with override_settings(DJTASKS={"broker_url": "django://default", "task_default_queue": "q-d"}):
        yield


def test_retry_writes_the_new_result_linked_back_and_both_pages_link(admin_client, django_broker):
    failed = result("first-run", states.FAILURE, args=[2, 3], kwargs={}, queue="q-d")
    response = admin_client.post(action_url(failed, "retry"), follow=True)
    retried = TaskResult.objects.get(retry_of="first-run")
    assert retried.status == states.PENDING
    assert (retried.task_name, retried.queue) == (failed.task_name, "q-d")
    assert QueueMessage.objects.filter(queue="q-d").count() == 1
    page = response.content.decode()  # back on the old result's page
    assert f"Sent tests.testapp.tasks.add again as {retried.task_id}" in page
    assert 'id="djtasks-graph-retried-as"' in page
    assert f'<a href="{change_url(retried)}" class="djtasks-result-link">{retried.task_id}</a>' in page
    new_page = admin_client.get(change_url(retried)).content.decode()
    assert f'<a href="{change_url(failed)}" class="djtasks-result-link">first-run</a>' in new_page


def test_a_second_retry_while_the_first_has_not_finished_is_refused(admin_client, django_broker):
    failed = result("clicked-twice", states.FAILURE, args=[2, 3], kwargs={}, queue="q-d")
    admin_client.post(action_url(failed, "retry"))
    second = admin_client.post(action_url(failed, "retry"), follow=True).content.decode()
    [retried] = TaskResult.objects.filter(retry_of="clicked-twice")
    assert f"was sent again a moment ago as {retried.task_id}, which has not finished yet" in second
    assert QueueMessage.objects.filter(queue="q-d").count() == 1
    TaskResult.objects.filter(pk=retried.pk).update(status=states.FAILURE)  # that retry failed too
    admin_client.post(action_url(failed, "retry"))
    assert TaskResult.objects.filter(retry_of="clicked-twice").count() == 2


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_retry_of_survives_every_state_the_worker_stores(alias):
    TaskResult.objects.using(alias).create(task_id="again", status=states.PENDING, retry_of="before")
    backend = DatabaseBackend(alias)
    info = ExecutionInfo(task_name="tests.testapp.tasks.add", worker="w@h", queue="q",
                         args=[1, 2], kwargs={})
    backend.store("again", states.STARTED, info=info)
    backend.store("again", states.RETRY, {"exc_type": "ValueError"}, info=info)
    backend.store("again", states.SUCCESS, 3, info=info)
    row = TaskResult.objects.using(alias).get(task_id="again")
    assert (row.status, row.result, row.retry_of) == (states.SUCCESS, 3, "before")
    backend.store("fresh", states.SUCCESS, 1, info=info)
    assert TaskResult.objects.using(alias).get(task_id="fresh").retry_of == ""


def test_retry_of_a_sensitive_result_is_refused_with_the_reason(admin_client, django_broker):
    secret = result("secret", states.FAILURE, task_name="tests.testapp.tasks.secret_add",
                    args=[1, 2], kwargs={})
    response = admin_client.post(action_url(secret, "retry"), follow=True)
    assert "is a sensitive task, whose arguments are never stored" in response.content.decode()
    assert not TaskResult.objects.filter(retry_of="secret").exists()
    assert not QueueMessage.objects.exists()
    assert not LogEntry.objects.exists()


def test_a_retry_that_cannot_be_published_leaves_no_pending_row():
    failed = result("unsendable", states.FAILURE, args=[1, 2], kwargs={})
    unreachable = {"broker_url": "amqp://guest:guest@127.0.0.1:1//", "broker_connection_timeout": 0.2,
                   "task_publish_retry": False}
    with override_settings(DJTASKS=unreachable), pytest.raises(ActionRefused, match=r"127\.0\.0\.1:1"):
        send_again(djtasks.app, failed)
    assert not TaskResult.objects.filter(retry_of="unsendable").exists()


def test_retry_and_terminate_with_the_broker_away_say_so_instead_of_failing(admin_client):
    failed = result("away-failed", states.FAILURE, args=[1, 2], kwargs={})
    running = result("away-running", states.STARTED)
    unreachable = {"broker_url": "amqp://guest:secret@127.0.0.1:1//",
                   "broker_connection_timeout": 0.2, "task_publish_retry": False}
    with override_settings(DJTASKS=unreachable):
        retried = admin_client.post(f"{LIST}{failed.pk}/action/retry/", follow=True)
        terminated = admin_client.post(f"{LIST}{running.pk}/action/terminate/",
                                       {"signal": "SIGKILL"}, follow=True)
    for page, said in ((retried, "Could not send away-failed again"),
                       (terminated, "Could not ask the workers to terminate away-running")):
        assert page.status_code == 200
        text = page.content.decode()
        assert said in text
        assert "secret" not in text


# -- delete --------------------------------------------------------------------------------


def test_delete_is_hidden_and_forbidden_without_delete_taskresult():
    row = result("to-keep")
    viewer = staff()
    assert "deletelink" not in viewer.get(change_url(row)).content.decode()
    assert viewer.post(f"{LIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert TaskResult.objects.filter(task_id="to-keep").exists()


def test_delete_is_djangos_own_with_delete_taskresult():
    row = result("to-delete")
    deleter = staff("delete_taskresult")
    assert "deletelink" in deleter.get(change_url(row)).content.decode()
    assert deleter.post(f"{LIST}{row.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not TaskResult.objects.filter(task_id="to-delete").exists()
