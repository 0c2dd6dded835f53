"""The RoutingRule admin: the list, its editable columns, the form's validation, the try box."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils import timezone

from djtasks.admin.routing_rules import unconsumed_queue_warning
from djtasks.models import RoutingRule, Worker
from djtasks.models.workers import OFFLINE, ONLINE, lost_after

pytestmark = [pytest.mark.django_db]

LIST = "/admin/djtasks/routingrule/"


@pytest.fixture(autouse=True)
def memory_app():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_routes": {"mail.*": "mail"}}):
        yield


def test_the_try_box_shows_the_route_and_its_source(admin_client):
    RoutingRule.objects.create(name="reports <slow>", pattern="reports.tasks.*", queue="slow")
    page = admin_client.get(LIST, {"try_task": "reports.tasks.build"}).content.decode()
    assert 'value="reports.tasks.build"' in page
    assert "(rule &quot;reports &lt;slow&gt;&quot;)" in page
    assert "slow" in page
    page = admin_client.get(LIST, {"try_task": "mail.send"}).content.decode()
    assert "(task_routes)" in page
    page = admin_client.get(LIST, {"try_task": "other.task"}).content.decode()
    assert "(default queue)" in page


def test_the_try_box_escapes_the_name(admin_client):
    page = admin_client.get(LIST, {"try_task": "<script>x</script>"}).content.decode()
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_the_list_filters_and_edits_order_and_enabled_in_place(admin_client):
    rule = RoutingRule.objects.create(name="r", pattern="a.*", queue="q", order=5)
    page = admin_client.get(LIST, {"enabled__exact": "1", "q": "a.*"}).content.decode()
    assert 'name="form-0-order"' in page
    assert 'name="form-0-enabled"' in page
    response = admin_client.post(LIST, {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(rule.pk),
        "form-0-order": "1", "_save": "Save",
    })
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.order, rule.enabled) == (1, False)


def test_the_form_names_the_field_of_each_mistake(admin_client):
    response = admin_client.post(f"{LIST}add/", {
        "name": "bad", "pattern": "(", "match": "regex", "order": "0", "enabled": "on",
        "queue": "amq.x", "priority": "12",
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"pattern", "queue", "priority"}
    assert not RoutingRule.objects.exists()


def test_adding_a_rule_saves_it_when_no_worker_answers(admin_client,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(f"{LIST}add/", {
            "name": "urgent mail", "pattern": r"^mail\.tasks\.(send|notify)_", "match": "regex",
            "order": "10", "enabled": "on", "queue": "hipri", "priority": "9",
        }, follow=True)
    assert len(callbacks) == 1  # the question to the workers was asked
    assert RoutingRule.objects.get(name="urgent mail").priority == 9
    texts = [str(m) for m in response.context["messages"]]
    assert not [t for t in texts if "No running worker" in t]  # unknown: nothing is claimed


def online_worker(hostname: str, queues: list[str], status: str = ONLINE) -> Worker:
    now = timezone.now()
    return Worker.objects.create(hostname=hostname, started=now, last_heartbeat=now,
                                 lost_after=lost_after(now, 60.0), queues=queues,
                                 written_status=status)


def test_a_worker_that_does_not_answer_in_time_counts_with_its_heartbeat_queues():
    online_worker("busy@host", ["celery", "hipri"])
    online_worker("gone@host", ["mail"], status=OFFLINE)
    assert unconsumed_queue_warning("hipri") is None
    warning = unconsumed_queue_warning("mail")  # only an offline worker had it
    assert warning is not None
    assert "queue 'mail' (1 worker(s) known)" in warning
